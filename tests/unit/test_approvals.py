"""The approval broker: a waiting tool call resolved from another task, or denied by its timeout."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta

import pytest

from duragent.runtime.approvals import (
    ApprovalBroker,
    ApprovalOutcome,
    DuplicateApproval,
    InvalidDecision,
    UnknownApproval,
)


def ask(
    broker: ApprovalBroker, call_id: str, session_id: str = "s_1", **kwargs: object
) -> asyncio.Task[ApprovalOutcome]:
    waiting = broker.request(
        call_id,
        session_id=session_id,
        agent="helper",
        tool="bash",
        invocation="make deploy",
        **kwargs,  # type: ignore[arg-type]
    )
    return asyncio.ensure_future(waiting)


async def test_decision_from_another_task_resolves_the_waiting_call() -> None:
    broker = ApprovalBroker()
    waiting = ask(broker, "call_1", arguments={"command": "make deploy"})

    async def person_clicks_allow() -> None:
        await asyncio.sleep(0.01)
        broker.decide("call_1", "allow_always")

    await asyncio.gather(person_clicks_allow(), waiting)

    outcome = waiting.result()
    assert (outcome.decision, outcome.reason) == ("allow_always", "decided")
    assert outcome.request.invocation == "make deploy"
    assert broker.pending() == []


async def test_unanswered_request_is_denied_after_its_timeout() -> None:
    broker = ApprovalBroker()

    outcome = await ask(broker, "call_1", timeout=timedelta(milliseconds=50))

    assert (outcome.decision, outcome.reason) == ("deny", "timeout")
    assert broker.pending() == []
    with pytest.raises(UnknownApproval):
        broker.decide("call_1", "allow_once")


async def test_waiting_holds_no_thread() -> None:
    broker = ApprovalBroker()
    threads_before = threading.active_count()
    waiters = [ask(broker, f"call_{n}") for n in range(50)]
    await asyncio.sleep(0.01)

    assert threading.active_count() == threads_before
    for n in range(50):
        broker.decide(f"call_{n}", "deny")
    assert {outcome.decision for outcome in await asyncio.gather(*waiters)} == {"deny"}


async def test_pending_lists_open_requests_per_session_with_their_deadline() -> None:
    broker = ApprovalBroker(default_timeout=timedelta(minutes=5))
    first = ask(broker, "call_a", session_id="s_1")
    second = ask(broker, "call_b", session_id="s_2")

    assert [r.call_id for r in broker.pending()] == ["call_a", "call_b"]
    [only] = broker.pending("s_2")
    assert only.call_id == "call_b"
    assert only.expires_at is not None
    assert only.expires_at - only.requested_at == timedelta(minutes=5)
    assert only.to_record()["command"] == "make deploy"

    broker.decide("call_a", "allow_once")
    broker.decide("call_b", "deny")
    await asyncio.gather(first, second)


async def test_unknown_call_id_and_bad_decision_are_specific_errors() -> None:
    broker = ApprovalBroker()
    waiting = ask(broker, "call_1")

    with pytest.raises(UnknownApproval, match="no pending approval for call 'call_9'"):
        broker.decide("call_9", "allow_once")
    with pytest.raises(InvalidDecision):
        broker.decide("call_1", "maybe")
    with pytest.raises(DuplicateApproval):
        broker.request("call_1", session_id="s_1", agent="helper", tool="bash", invocation="x")

    broker.decide("call_1", "deny")
    assert (await waiting).decision == "deny"


async def test_cancelled_turn_closes_its_request() -> None:
    broker = ApprovalBroker()
    waiting = ask(broker, "call_1")
    await asyncio.sleep(0)

    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting

    assert broker.pending() == []


async def test_two_sessions_may_wait_on_the_same_call_id_and_are_decided_apart() -> None:
    """Call ids are unique only within a conversation (the demo's and many local servers' are
    `call_0`, `call_1`...): another session's pending call of the same id is not a duplicate."""
    broker = ApprovalBroker()
    first = ask(broker, "call_0", session_id="s_a")
    second = ask(broker, "call_0", session_id="s_b")

    broker.decide("call_0", "deny", session_id="s_b")
    assert (await second).decision == "deny"
    assert [r.session_id for r in broker.pending()] == ["s_a"]
    with pytest.raises(DuplicateApproval):
        ask(broker, "call_0", session_id="s_a")

    broker.decide("call_0", "allow_once")  # the only one left: no session needed
    assert (await first).decision == "allow_once"
