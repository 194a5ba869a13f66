"""Dashboard: sessions (list, start one), one session's transcript (live over SSE), send, approve."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from typing import Any

from aiohttp import web

from duragent.runtime.loop import can_run_again
from duragent.server.problems import HttpProblem
from duragent.server.routes.sessions import HISTORY_TYPES, decode_cursor, encode_cursor, follow_events
from duragent.server.state import STATE
from duragent.sessions.inspect import describe_unattended, unattended_report
from duragent.sessions.state import resume
from duragent.stores.base import SessionReadOptions, changes_by_person, list_key, utcnow
from duragent.web.login import UI_PREFIX, current_login, form_endpoint
from duragent.web.pages import render, see_other

#: Sessions on a page of the list (newest activity first); "Older sessions" shows the next page.
LIST_PAGE = 50
#: Transcript events shown when a session page opens (the newest ones).
TRANSCRIPT_LIMIT = 500
_DECISIONS = ("allow_once", "allow_always", "deny")
#: The state shown for a session whose turn waits for a person to answer a tool call: its stored
#: status is `paused`, but Resume does not help it, only the approval's buttons do.
AWAITING_APPROVAL = "awaiting approval"


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def shown_status(status: str, approvals_waiting: int) -> str:
    """The state a page shows: `awaiting approval` for a session (not ended) with calls waiting."""
    return AWAITING_APPROVAL if approvals_waiting and status != "ended" else status


async def list_sessions(request: web.Request) -> web.Response:
    """GET /ui/ and /ui/sessions?cursor=: a page of sessions, from the newest or after the cursor's
    session (the `next_cursor` format of GET /api/v1/sessions); it costs the page, not every session,
    as the page's script asks for it again every few seconds."""
    state = request.app[STATE]
    cursor = request.query.get("cursor")
    after = decode_cursor(cursor) if cursor else None
    # One more than the page tells whether there is an older one.
    found = await state.sessions.list_sessions(limit=LIST_PAGE + 1, after=after)
    page = found[:LIST_PAGE]
    older = encode_cursor(list_key(page[-1])) if len(found) > LIST_PAGE else None
    live = state.sessions.live
    rows = []
    for s in page:
        approvals = len(_waiting(state, s.session_id))
        rows.append(
            {
                "id": s.session_id,
                "name": s.name,
                "first_message": s.first_message,
                "agent": s.agent,
                "status": shown_status(s.status, approvals),
                "updated": _when(s.updated_at),
                "loaded": s.session_id in live,
                "gateway": _gateway_of(state, s.session_id),
                "approvals": approvals,
            }
        )
    agents = [s.name for s in state.agents.summaries() if s.valid]
    return render(
        request,
        "sessions.html",
        {"rows": rows, "older": older, "newest": after is None, "agents": agents},
    )


def _gateway_of(state: Any, session_id: str) -> str:
    live = state.sessions.live.get(session_id)
    metadata = live.log.state.metadata if live is not None else {}
    gateway = metadata.get("gateway") if isinstance(metadata, dict) else None
    return str(gateway) if gateway else ""


@form_endpoint
async def start_session(request: web.Request, form: dict[str, str]) -> web.StreamResponse:
    """POST /ui/sessions (agent): a new session, then its page."""
    live = await request.app[STATE].sessions.create(
        form.get("agent", ""), metadata={"created_by": "dashboard"}
    )
    raise see_other(f"{UI_PREFIX}/sessions/{live.session_id}")


async def show_session(request: web.Request) -> web.Response:
    """GET /ui/sessions/{session_id}: what happened so far; the page's script follows what comes next."""
    state = request.app[STATE]
    session_id = request.match_info["session_id"]
    live = state.sessions.live.get(session_id)
    session = (
        live.log.state if live is not None else await resume(state.workspace.stores.sessions, session_id)
    )
    events = await state.workspace.stores.sessions.read(session_id, SessionReadOptions(types=HISTORY_TYPES))
    transcript = [
        {"seq": e.seq, "type": e.type, "when": _when(e.ts), "p": e.payload}
        for e in events[-TRANSCRIPT_LIMIT:]
    ]
    pending = _waiting(state, session_id)
    unattended = None
    if live is not None:
        limit = live.settings.max_background_runtime
        report = unattended_report(session.status, live.unattended_since, limit, utcnow())
        unattended = None if report is None else describe_unattended(report, _when)
    return render(
        request,
        "session.html",
        {
            "session": session,
            "status": shown_status(session.status, len(pending)),
            "transcript": transcript,
            "pending": pending,
            "unattended": unattended,
            "decisions": _DECISIONS,
            # (not a turn that left the model nothing to answer: the server refuses that)
            "retryable": session.turn_closed_by is not None and can_run_again(session),
            # (a turn waiting for an approval is paused: the approval's buttons answer it)
            "turn_running": live is not None and live.busy and session.status != "paused",
            "resumable": session.status == "paused" and not pending,
            # as far as the transcript goes: a user message still fsyncing is not read yet
            "last_seq": session.last_seq if live is None else live.log.durable_seq,
            "omitted": max(len(events) - TRANSCRIPT_LIMIT, 0),
        },
    )


@form_endpoint
async def send_message(request: web.Request, form: dict[str, str]) -> web.StreamResponse:
    """POST /ui/sessions/{session_id}/messages (content): queue it; the reply streams to the page."""
    session_id = request.match_info["session_id"]
    content = form.get("content", "").strip()
    if not content:
        raise HttpProblem(400, "the message is empty: write something to send")
    live = await request.app[STATE].sessions.get(session_id)
    await live.queue(content)
    raise see_other(f"{UI_PREFIX}/sessions/{session_id}")


@form_endpoint
async def retry_turn(request: web.Request, form: dict[str, str]) -> web.StreamResponse:
    """POST /ui/sessions/{session_id}/retry: run the failed (or cancelled) last turn again."""
    session_id = request.match_info["session_id"]
    live = await request.app[STATE].sessions.get(session_id)
    await live.retry()  # (409 saying why when there is nothing to retry)
    raise see_other(f"{UI_PREFIX}/sessions/{session_id}")


@form_endpoint
async def cancel_turn(request: web.Request, form: dict[str, str]) -> web.StreamResponse:
    """POST /ui/sessions/{session_id}/cancel: stop the running turn (what it said so far is kept)."""
    session_id = request.match_info["session_id"]
    live = await request.app[STATE].sessions.get(session_id)
    with changes_by_person():  # a person's click: the turn's `cancelled` is committed as theirs
        await live.cancel()  # (no turn running: nothing to do, as the API answers `idle`)
    raise see_other(f"{UI_PREFIX}/sessions/{session_id}")


@form_endpoint
async def resume_session(request: web.Request, form: dict[str, str]) -> web.StreamResponse:
    """POST /ui/sessions/{session_id}/resume: continue a paused session (its unfinished turn,
    then queued messages)."""
    session_id = request.match_info["session_id"]
    live = await request.app[STATE].sessions.get(session_id)
    with changes_by_person():  # a person's click: `resumed` is theirs, the turn it runs on the agent's
        await live.resume()  # (409 when it has ended)
    raise see_other(f"{UI_PREFIX}/sessions/{session_id}")


@form_endpoint
async def end_session(request: web.Request, form: dict[str, str]) -> web.StreamResponse:
    """POST /ui/sessions/{session_id}/end (confirm=yes): stop any turn and the session's
    background processes; it takes no more messages. Without the tick, nothing happens."""
    session_id = request.match_info["session_id"]
    if form.get("confirm") != "yes":
        raise see_other(f"{UI_PREFIX}/sessions/{session_id}")
    live = await request.app[STATE].sessions.get(session_id)
    with changes_by_person():  # a person's click, never the agent's: committed as theirs
        await live.end("ended from the dashboard")
    raise see_other(f"{UI_PREFIX}/sessions/{session_id}")


@form_endpoint
async def answer_approval(request: web.Request, form: dict[str, str]) -> web.StreamResponse:
    """POST /ui/sessions/{session_id}/approve (call_id, decision)."""
    state = request.app[STATE]
    session_id = request.match_info["session_id"]
    decision = form.get("decision", "")
    if decision not in _DECISIONS:
        raise web.HTTPBadRequest(text=f"decision must be one of {', '.join(_DECISIONS)}")
    call_id = form.get("call_id", "")
    if not any(p["call_id"] == call_id for p in _waiting(state, session_id)):
        raise web.HTTPConflict(text="that approval is no longer pending (someone answered it already?)")
    live = await state.sessions.get(session_id)
    if any(p.call_id == call_id for p in state.approvals.pending(session_id)):
        live.decide(call_id, decision)
        raise see_other(f"{UI_PREFIX}/sessions/{session_id}")
    # left by a turn that stopped: taken up, it asks again, and this is the answer (if it asks
    # another call first, or goes on without asking, the page shows that instead)
    with changes_by_person():  # attaching may resume the session: the person's act
        subscription = await live.subscribe()
    try:
        with contextlib.suppress(TimeoutError):
            with changes_by_person():  # the answer resumes the session: as the API's /approve does
                asked_now = await live.take_up(subscription, call_id, [])
            if asked_now:
                live.decide(call_id, decision)
    finally:
        subscription.close()
    raise see_other(f"{UI_PREFIX}/sessions/{session_id}")


async def follow_events_while_logged_in(request: web.Request) -> web.StreamResponse:
    """GET /ui/sessions/{session_id}/events: the session's event stream (`follow_events`), cut when
    the browser's login ends (Log out in another tab): what the session says next is not for a
    browser logged out. The page's script then says its live view stopped."""
    login = current_login(request)
    logged_out = asyncio.ensure_future(login.ended.wait())
    logged_out.add_done_callback(lambda waited: _hang_up(request, waited))
    try:
        return await follow_events(request)
    finally:
        logged_out.cancel()


def _hang_up(request: web.Request, logged_out: asyncio.Future[Any]) -> None:
    """Close the connection of `request` once `logged_out` is done, not cancelled (its stream's
    next write fails, and the handler ends)."""
    if not logged_out.cancelled() and request.transport is not None:
        request.transport.close()


def _waiting(state: Any, session_id: str) -> list[dict[str, str]]:
    """The calls of a session waiting for a person (`LiveSession.waiting_approvals`); none for a
    session not loaded."""
    live = state.sessions.live.get(session_id)
    if live is None:
        return []
    return [
        {"call_id": str(a["call_id"]), "tool": str(a["tool"]), "invocation": str(a["command"])}
        for a in live.waiting_approvals()
    ]
