"""The waits between the Discord plugin's attempts at an unreachable Gateway."""

from __future__ import annotations

from duragent.plugins.discord.plugin import ReconnectBackoff


def test_waits_double_from_a_second_to_a_minute_each_within_a_fifth_either_way() -> None:
    backoff = ReconnectBackoff()
    waits = [backoff.delay() for _ in range(12)]
    expected = [1, 2, 4, 8, 16, 32, 60, 60, 60, 60, 60, 60]
    for wait, nominal in zip(waits, expected, strict=True):
        assert 0.8 * nominal <= wait <= 1.2 * nominal


def test_an_answer_from_the_gateway_starts_the_next_outage_from_a_second_again() -> None:
    backoff = ReconnectBackoff()
    for _ in range(8):
        backoff.delay()
    backoff.reset()
    assert backoff.delay() <= 1.2


def test_a_long_outage_never_waits_more_than_a_minute() -> None:
    backoff = ReconnectBackoff()
    assert max(backoff.delay() for _ in range(2000)) <= 72
