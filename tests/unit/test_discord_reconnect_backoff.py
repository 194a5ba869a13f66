"""The waits between the Discord plugin's attempts at an unreachable Gateway."""

from __future__ import annotations

from duragent.plugins.discord.plugin import ReconnectBackoff


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_waits_double_from_a_second_to_a_minute_each_within_a_fifth_either_way() -> None:
    backoff = ReconnectBackoff()
    waits = [backoff.delay() for _ in range(12)]
    expected = [1, 2, 4, 8, 16, 32, 60, 60, 60, 60, 60, 60]
    for wait, nominal in zip(waits, expected, strict=True):
        assert 0.8 * nominal <= wait <= 1.2 * nominal


def test_a_connection_that_stays_up_a_minute_starts_the_next_outage_from_a_second() -> None:
    clock = Clock()
    backoff = ReconnectBackoff(clock)
    for _ in range(8):
        backoff.delay()
    backoff.connected()
    clock.now += 60
    assert backoff.delay() <= 1.2


def test_a_connection_that_drops_again_within_a_minute_goes_on_doubling() -> None:
    clock = Clock()
    backoff = ReconnectBackoff(clock)
    for _ in range(4):
        backoff.delay()  # 1, 2, 4, 8 s
    backoff.connected()
    clock.now += 20
    assert 0.8 * 16 <= backoff.delay() <= 1.2 * 16


def test_a_long_outage_never_waits_more_than_a_minute_and_a_fifth() -> None:
    backoff = ReconnectBackoff()
    assert max(backoff.delay() for _ in range(2000)) <= 72


def test_a_resume_without_an_outage_does_not_make_a_drop_after_hours_up_look_like_flapping() -> None:
    clock = Clock()
    backoff = ReconnectBackoff(clock)
    for _ in range(7):
        backoff.delay()
    backoff.connected()
    clock.now += 3600
    backoff.connected()  # Discord asked the bot to reconnect: resumed at once, no wait
    clock.now += 10
    assert backoff.delay() <= 1.2
