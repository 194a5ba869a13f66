"""Sessions over HTTP: create, list, read, delete, send messages (waiting or streamed), follow
events with replay, approve tool calls, cancel and resume. Each handler maps HTTP onto the
SessionManager / LiveSession API; the session actor does the work.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime

from aiohttp import web

from duragent.server import sse
from duragent.server.bodies import (
    Accepted,
    ApprovalComplete,
    Approve,
    CreateSession,
    EventsQuery,
    HistoryItem,
    MessagePage,
    MessageReply,
    MessagesQuery,
    Paused,
    PendingApproval,
    ProblemOut,
    Queued,
    SendMessage,
    SessionList,
    SessionOut,
    SessionQuery,
    UnattendedOut,
    json_reply,
    read_body,
    read_query,
)
from duragent.server.openapi import documented
from duragent.server.problems import FieldError, HttpProblem
from duragent.server.state import STATE, ServerState
from duragent.sessions.inspect import unattended_report
from duragent.sessions.live import LiveSession, Subscription, Ticket
from duragent.sessions.state import SessionState, resume
from duragent.sessions.stream import STREAM_EVENTS, Position, StreamEvent, ends_turn, own_turn
from duragent.stores.base import SessionReadOptions, SessionSummary, utcnow

#: Stored event types that make up a session's history (status changes and bookkeeping left out).
HISTORY_TYPES = frozenset(
    {
        "user_message",
        "assistant_message",
        "tool_call",
        "tool_result",
        "approval_required",
        "approval_decision",
        "notification",
        "error",
        "cancelled",
    }
)
_ROLES = {"user_message": "user", "assistant_message": "assistant", "tool_result": "tool"}


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _session_id(request: web.Request) -> str:
    return request.match_info["session_id"]


async def _accept_message(request: web.Request) -> tuple[LiveSession, Subscription, Ticket]:
    """Read the message, attach to its session and queue it: the caller owns the subscription.

    Requests get through this a few at a time (`ServerState.accepting`): 200 clients posting at
    once would otherwise do all of it in one turn of the event loop, while every reply already
    streaming waits. The body is read before: four slow uploads must not hold every slot.
    """
    body = await read_body(request, SendMessage)
    async with request.app[STATE].accepting:
        live = await _live(request)
        subscription = await live.subscribe()
        try:
            ticket = await live.queue(body.content)
        except BaseException:
            subscription.close()
            raise
    return live, subscription, ticket


async def _live(request: web.Request) -> LiveSession:
    return await request.app[STATE].sessions.get(_session_id(request))


def _live_out(live: LiveSession, state: ServerState) -> SessionOut:
    s = live.log.state
    return SessionOut(
        session_id=s.session_id,
        agent=s.agent,
        status=s.status,
        created_at=_iso(s.created_at),
        updated_at=_iso(s.updated_at),
        last_seq=live.log.durable_seq,  # (a user message still fsyncing is not told of)
        loaded=True,
        on_disconnect=live.settings.on_disconnect,
        attached=live.attached,
        queued=live.queued,
        busy=live.busy,
        pending_approvals=live.waiting_approvals(),
        metadata=dict(s.metadata),
        unattended=_unattended_out(live),
    )


def _unattended_out(live: LiveSession) -> UnattendedOut | None:
    limit = live.settings.max_background_runtime
    report = unattended_report(live.log.state.status, live.unattended_since, limit, utcnow())
    return None if report is None else UnattendedOut(**report)


def _stored_out(s: SessionState) -> SessionOut:
    return SessionOut(
        session_id=s.session_id,
        agent=s.agent,
        status=s.status,
        created_at=_iso(s.created_at),
        updated_at=_iso(s.updated_at),
        last_seq=s.last_seq,
        loaded=False,
        on_disconnect=s.on_disconnect,
        metadata=dict(s.metadata),
    )


def _summary_out(s: SessionSummary, live: LiveSession | None) -> SessionOut:
    return SessionOut(
        session_id=s.session_id,
        agent=s.agent,
        status=s.status,
        created_at=_iso(s.created_at),
        updated_at=_iso(s.updated_at),
        last_seq=s.last_seq,
        loaded=live is not None,
        metadata={"name": s.name} if s.name else None,
    )


# --- sessions ------------------------------------------------------------------------------


@documented(
    "Start a session with an agent.",
    body=CreateSession,
    # 422: an `agent_spec` that is not a valid agent (deployed like the admin API's)
    responses={201: SessionOut, 403: ProblemOut, 404: ProblemOut, 409: ProblemOut, 422: ProblemOut},
)
async def create_session(request: web.Request) -> web.Response:
    """POST /api/v1/sessions -> 201 with the new session."""
    body = await read_body(request, CreateSession)
    state = request.app[STATE]
    if body.agent_spec is not None:
        _require_admin(request, state)
        await _deploy_inline_agent(state, body)
    live = await state.sessions.create(body.agent, on_disconnect=body.on_disconnect, metadata=body.metadata)
    return json_reply(_live_out(live, state), 201)


@documented(
    "Every session on disk, newest activity first, one page at a time.",
    query=SessionQuery,
    responses={200: SessionList},
)
async def list_sessions(request: web.Request) -> web.Response:
    """GET /api/v1/sessions?agent=&status=&limit=&cursor=."""
    query = read_query(request, SessionQuery)
    state = request.app[STATE]
    summaries = await state.sessions.list_sessions(agent=query.agent, status=query.status)
    ordered = sorted(summaries, key=_sort_key, reverse=True)
    if query.cursor:
        after = _decode_cursor(query.cursor)
        ordered = [s for s in ordered if _sort_key(s) < after]
    page = ordered[: query.limit]
    more = len(ordered) > query.limit
    live = state.sessions.live
    return json_reply(
        SessionList(
            sessions=[_summary_out(s, live.get(s.session_id)) for s in page],
            next_cursor=_encode_cursor(_sort_key(page[-1])) if more and page else None,
        )
    )


def _require_admin(request: web.Request, state: ServerState) -> None:
    """Refuse an inline agent spec from a caller the admin API would refuse.

    Deploying an agent is an admin action: its files are `${VAR}`-interpolated with the server's
    environment and its model settings choose where requests (and API keys) go.
    """
    from duragent.server.auth import ADMIN_TOKEN_HEADER, REQUIRED_TOKENS, admin_authorized

    if admin_authorized(request, request.app[REQUIRED_TOKENS].admin):
        return
    detail = f"an inline agent_spec deploys an agent, so it needs the admin token (in {ADMIN_TOKEN_HEADER})"
    raise HttpProblem(403, detail, type_name="forbidden")


async def _deploy_inline_agent(state: ServerState, body: CreateSession) -> None:
    """Deploy the request's agent spec as a dynamic agent unless the same files are already deployed.

    Deploying (not a throwaway agent) keeps the session resumable after a restart and lets every
    worker load it; identical specs are not redeployed, so a client may send its spec every time.
    """
    import yaml

    from duragent.agents.catalog import AgentNotFound
    from duragent.agents.spec import is_shorthand
    from duragent.server.routes.admin import deploy_files

    spec = dict(body.agent_spec or {})
    if is_shorthand(spec):
        spec.setdefault("name", body.agent)
        named = spec["name"]
    else:
        metadata = dict(spec.get("metadata") or {})
        metadata.setdefault("name", body.agent)
        spec["metadata"] = metadata
        named = metadata["name"]
    if named != body.agent:
        raise HttpProblem(
            422,
            "agent_spec names another agent",
            [
                FieldError(
                    "agent_spec.metadata.name", f"must be {body.agent!r} (the session's agent), got {named!r}"
                )
            ],
        )
    files = {"agent.yaml": yaml.safe_dump(spec, sort_keys=False, allow_unicode=True), **(body.prompts or {})}
    try:
        deployed = await asyncio.to_thread(state.agents.files, body.agent)
    except AgentNotFound:
        deployed = {}
    if deployed != files:
        await deploy_files(state.agents, body.agent, files)


def _sort_key(summary: SessionSummary) -> tuple[str, str]:
    return (_iso(summary.updated_at), summary.session_id)


def _encode_cursor(key: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode("|".join(key).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    updated, sep, session_id = text.partition("|")
    if not sep:
        raise HttpProblem(
            400, "invalid cursor: pass the next_cursor of a previous page", type_name="validation"
        )
    return updated, session_id


@documented(
    "One session: status, attached clients, queue, pending approvals.",
    responses={200: SessionOut, 404: ProblemOut},
)
async def get_session(request: web.Request) -> web.Response:
    """GET /api/v1/sessions/{id} (read from disk when the session is not loaded)."""
    state = request.app[STATE]
    session_id = _session_id(request)
    live = state.sessions.live.get(session_id)
    if live is not None:
        return json_reply(_live_out(live, state))
    return json_reply(_stored_out(await resume(state.workspace.stores.sessions, session_id)))


@documented("Stop a session and delete its files.", responses={404: ProblemOut})
async def delete_session(request: web.Request) -> web.Response:
    """DELETE /api/v1/sessions/{id} -> 204."""
    await request.app[STATE].sessions.delete(_session_id(request))
    return web.Response(status=204)


@documented(
    "History (messages, tool calls and results): the newest `limit` by default, or the page after `after`.",
    query=MessagesQuery,
    responses={200: MessagePage, 404: ProblemOut},
)
async def list_messages(request: web.Request) -> web.Response:
    """GET /api/v1/sessions/{id}/messages?after=&limit=."""
    query = read_query(request, MessagesQuery)
    store = request.app[STATE].workspace.stores.sessions
    session_id = _session_id(request)
    if query.after is None:
        events = await store.read(session_id, SessionReadOptions(types=HISTORY_TYPES))
        page, next_after = events[-query.limit :], None
    else:
        options = SessionReadOptions(after_seq=query.after, types=HISTORY_TYPES, limit=query.limit + 1)
        events = await store.read(session_id, options)
        page = events[: query.limit]
        next_after = page[-1].seq if len(events) > query.limit else None
    items = [
        HistoryItem(
            seq=e.seq,
            id=e.id,
            ts=_iso(e.ts),
            type=e.type,
            role=_ROLES.get(e.type),
            content=e.payload.get("content") if isinstance(e.payload.get("content"), str) else None,
            payload=e.payload,
        )
        for e in page
    ]
    return json_reply(MessagePage(messages=items, next_after=next_after))


# --- turns ---------------------------------------------------------------------------------


def _pending_reply(session_id: str, event: StreamEvent) -> PendingApproval:
    data = event.data
    return PendingApproval(
        session_id=session_id,
        call_id=str(data.get("call_id", "")),
        tool=str(data.get("tool", "")),
        command=str(data.get("command", "")),
        arguments=dict(data.get("arguments") or {}),
    )


def _turn_problem(event: StreamEvent) -> HttpProblem:
    if event.event == "cancelled":
        return HttpProblem(409, "the turn was cancelled", type_name="cancelled")
    code = str(event.data.get("code", "error"))
    return HttpProblem(502, str(event.data.get("message", "the turn failed")), type_name=f"turn-{code}")


async def _wait_for_outcome(
    live: LiveSession, events: AsyncIterator[StreamEvent], *, approve: bool
) -> web.Response:
    """Follow a turn to its outcome: reply, pending approval, pause, or failure.

    A pending approval is answered once the session has paused for it (the status change follows
    the request at once), so the client that hears of it finds the session paused.
    """
    pending: PendingApproval | None = None
    async for event in events:
        if event.event == "approval_required":
            pending = _pending_reply(live.session_id, event)
            if live.status == "paused":  # already paused: no status change follows
                return json_reply(pending, 202)
            continue
        if pending is not None and event.event == "status" and event.data.get("to") == "paused":
            return json_reply(pending, 202)
        if event.event == "done":
            data = event.data
            truncated = bool(data.get("truncated"))
            if approve:
                return json_reply(
                    ApprovalComplete(
                        status="truncated" if truncated else "complete",
                        message_id=str(data.get("message_id", "")),
                        content=str(data.get("content", "")),
                    )
                )
            return json_reply(
                MessageReply(
                    message_id=str(data.get("message_id", "")),
                    content=str(data.get("content", "")),
                    usage=data.get("turn_usage") or data.get("usage") or None,
                    truncated=truncated,
                )
            )
        if event.event in ("error", "cancelled"):
            raise _turn_problem(event)
        if event.event == "status" and event.data.get("to") == "paused":
            return json_reply(Paused(reason=str(event.data.get("reason", "paused"))), 202)
    raise HttpProblem(503, "the session was closed before the turn finished (server shutting down?)")


def _client_gone_reply() -> web.Response:
    # Nobody reads it; 499 is how nginx logs a request its client abandoned.
    return web.Response(status=499, reason="Client Closed Request")


@documented(
    "Send a message and wait for the reply (202 when it waits for approval or is queued).",
    body=SendMessage,
    responses={200: MessageReply, 202: PendingApproval, 404: ProblemOut, 409: ProblemOut, 502: ProblemOut},
)
async def send_message(request: web.Request) -> web.Response:
    """POST /api/v1/sessions/{id}/messages."""
    live, subscription, ticket = await _accept_message(request)
    try:
        if ticket.ahead:
            return json_reply(Queued(position=ticket.ahead), 202)
        events = sse.while_connected(request, own_turn(subscription, ticket))
        async with contextlib.aclosing(events):
            return await _wait_for_outcome(live, events, approve=False)
    except sse.ClientGone:
        return _client_gone_reply()
    finally:
        subscription.close()


@documented(
    "Send a message and stream its turn as server-sent events (start, token, tool_call, tool_result, "
    "approval_required, status, done, error, cancelled).",
    body=SendMessage,
    responses={404: ProblemOut},
    sse=True,
)
async def stream_message(request: web.Request) -> web.StreamResponse:
    """POST /api/v1/sessions/{id}/stream."""
    _, subscription, ticket = await _accept_message(request)
    try:
        response = await sse.open_stream(request)
        state = {"mine": False}

        def accept(event: StreamEvent) -> tuple[bool, bool]:
            if not state["mine"]:
                if not ticket.started.done():
                    return False, False
                if ticket.started.cancelled():
                    return event.event == "cancelled", event.event == "cancelled"
                if event.position < ticket.started.result():
                    return False, False
                state["mine"] = True
            return event.event in STREAM_EVENTS, ends_turn(event)

        await sse.pump(request, response, subscription, accept, keep_alive=_keep_alive(request))
        return response
    finally:
        subscription.close()


@documented(
    "Follow everything a session does, as server-sent events with `id:` positions. Send "
    "`Last-Event-ID` (or `?after=`) to replay what was missed first; `?after=0` replays everything.",
    query=EventsQuery,
    responses={404: ProblemOut},
    sse=True,
)
async def follow_events(request: web.Request) -> web.StreamResponse:
    """GET /api/v1/sessions/{id}/events."""
    query = read_query(request, EventsQuery)
    raw = request.headers.get("Last-Event-ID") or query.after
    try:
        after = Position.parse(raw) if raw else None
    except ValueError:
        raise HttpProblem(
            400, f"invalid event position {raw!r}: expected `12` or `12.3`", type_name="validation"
        ) from None
    # On stateless workers this relays the session from whichever worker runs it.
    subscription = await request.app[STATE].sessions.follow(_session_id(request), after)
    try:
        response = await sse.open_stream(request)
        await sse.pump(
            request, response, subscription, lambda event: (True, False), keep_alive=_keep_alive(request)
        )
        return response
    finally:
        subscription.close()


@documented(
    "Decide a tool call that waits for approval; waits for the turn like POST /messages.",
    body=Approve,
    responses={200: ApprovalComplete, 202: PendingApproval, 400: ProblemOut, 404: ProblemOut},
)
async def approve(request: web.Request) -> web.Response:
    """POST /api/v1/sessions/{id}/approve {call_id, decision}."""
    body = await read_body(request, Approve)
    state = request.app[STATE]
    live = await _live(request)
    pending = state.approvals.pending(live.session_id)
    asked = any(p.call_id == body.call_id for p in pending)
    # The turn stopped after asking (paused at a safe point) and nobody is asked now: resumed,
    # it asks again, and this answer is that question's.
    stopped = not asked and any(a.get("call_id") == body.call_id for a in live.stopped_approvals())
    if not asked and not stopped:
        if pending:
            raise HttpProblem(400, f"call_id mismatch: expected {pending[0].call_id}", type_name="validation")
        raise HttpProblem(404, "no pending approval for this session", type_name="not-found")
    subscription = await live.subscribe()
    try:
        if stopped:
            seen: list[StreamEvent] = []
            try:
                asked_now = await live.take_up(subscription, body.call_id, seen)
            except TimeoutError:
                raise HttpProblem(
                    409, f"the session's turn did not ask for call {body.call_id} again", type_name="conflict"
                ) from None
            if not asked_now:
                # it asked another call of the batch first, or went on without asking (the policy
                # allows the call now): the client hears what happened instead
                replay = sse.while_connected(request, _replayed(seen, subscription))
                async with contextlib.aclosing(replay):
                    return await _wait_for_outcome(live, replay, approve=True)
        live.decide(body.call_id, body.decision)
        events = sse.while_connected(request, _after_decision(subscription, body.call_id))
        async with contextlib.aclosing(events):
            return await _wait_for_outcome(live, events, approve=True)
    except sse.ClientGone:
        return _client_gone_reply()
    finally:
        subscription.close()


async def _replayed(seen: list[StreamEvent], subscription: Subscription) -> AsyncIterator[StreamEvent]:
    """`seen`, then what the subscription brings next."""
    for event in seen:
        yield event
    async for event in subscription:
        yield event


async def _after_decision(subscription: Subscription, call_id: str) -> AsyncIterator[StreamEvent]:
    async for event in subscription:
        if event.event == "approval_required" and event.data.get("call_id") == call_id:
            continue
        yield event
        if ends_turn(event) or event.event == "approval_required":
            return


@documented(
    "Stop the running turn now (what was said so far is kept).", responses={200: Accepted, 404: ProblemOut}
)
async def cancel(request: web.Request) -> web.Response:
    """POST /api/v1/sessions/{id}/cancel."""
    live = await _live(request)
    cancelled = await live.cancel()
    return json_reply(Accepted(status="cancelled" if cancelled else "idle", session_id=live.session_id))


@documented(
    "Continue a paused session: its unfinished turn, then queued messages.",
    responses={202: Accepted, 404: ProblemOut, 409: ProblemOut},
)
async def resume_session(request: web.Request) -> web.Response:
    """POST /api/v1/sessions/{id}/resume."""
    live = await _live(request)
    await live.resume()
    return json_reply(Accepted(status=live.status, session_id=live.session_id), 202)


@documented(
    "End a session: any turn stops, `session_end` is recorded, it takes no more messages; its files stay.",
    responses={200: Accepted, 404: ProblemOut},
)
async def end_session(request: web.Request) -> web.Response:
    """POST /api/v1/sessions/{id}/end."""
    live = await _live(request)
    await live.end("ended by client")
    return json_reply(Accepted(status=live.status, session_id=live.session_id))


def _keep_alive(request: web.Request) -> float:
    return request.app[STATE].keep_alive


def add_routes(app: web.Application) -> None:
    """Register the session routes."""
    r = app.router
    r.add_post("/api/v1/sessions", create_session)
    r.add_get("/api/v1/sessions", list_sessions)
    r.add_get("/api/v1/sessions/{session_id}", get_session)
    r.add_delete("/api/v1/sessions/{session_id}", delete_session)
    r.add_get("/api/v1/sessions/{session_id}/messages", list_messages)
    r.add_post("/api/v1/sessions/{session_id}/messages", send_message)
    r.add_post("/api/v1/sessions/{session_id}/stream", stream_message)
    r.add_get("/api/v1/sessions/{session_id}/events", follow_events)
    r.add_post("/api/v1/sessions/{session_id}/approve", approve)
    r.add_post("/api/v1/sessions/{session_id}/cancel", cancel)
    r.add_post("/api/v1/sessions/{session_id}/resume", resume_session)
    r.add_post("/api/v1/sessions/{session_id}/end", end_session)
