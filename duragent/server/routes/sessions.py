"""Sessions over HTTP: create, list, read, delete, send messages (waiting or streamed), follow
events with replay, approve tool calls, cancel and resume. Each handler maps HTTP onto the
SessionManager / LiveSession API; the session actor does the work.

On workers sharing PostgreSQL, a request for a session another worker keeps (its turn waits for
an approval, or runs long) is served by that worker: approve, cancel, messages, resume, end and
delete are handed to it (`_at_session`, duragent.cluster.requests), and its answer is this one.
A streamed message is handed to it too, and its turn streamed from here (`_stream_from_owner`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

from aiohttp import web

from duragent.client.http import CLIENT_HEADER
from duragent.cluster.ownership import SessionOwnedElsewhere
from duragent.cluster.requests import Answer, OwnerStopped, Tell
from duragent.cluster.turns import RemoteTurn
from duragent.errors import Problem
from duragent.server import sse
from duragent.server.bodies import (
    Accepted,
    ApprovalComplete,
    Approve,
    Body,
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
from duragent.server.problems import FieldError, HttpProblem, problem_of, turn_error_status
from duragent.server.state import STATE, ServerState
from duragent.sessions.inspect import unattended_report
from duragent.sessions.live import LiveSession, SessionEnded, Subscription, Ticket
from duragent.sessions.state import SessionState, resume
from duragent.sessions.stream import (
    APPROVAL_PAUSE_REASON,
    STREAM_EVENTS,
    Position,
    StreamEvent,
    ends_turn,
    from_stored,
    own_turn,
)
from duragent.stores.base import (
    ListKey,
    SessionLocked,
    SessionReadOptions,
    SessionSummary,
    changes_by_person,
    list_key,
    utcnow,
)

log = logging.getLogger(__name__)

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
        "turn_retried",
    }
)
#: The `/stream` comment sent first when the message waits behind other turns (read by
#: `duragent.client.sse.queued_behind`).
QUEUED_COMMENT = "queued behind {ahead} turn(s)"
_ROLES = {"user_message": "user", "assistant_message": "assistant", "tool_result": "tool"}


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _session_id(request: web.Request) -> str:
    return request.match_info["session_id"]


#: Wraps the events a request waits for: `sse.while_connected` (the wait ends when the client
#: hangs up), or `_as_they_come` for a request another worker got (its asker says when it gives up).
Watch = Callable[[AsyncIterator[StreamEvent]], AsyncGenerator[StreamEvent, None]]


@dataclass(frozen=True)
class _Serving:
    """A request for one session being served: on the worker it reached, or on the session's owner."""

    state: ServerState
    session_id: str
    #: Ask the worker that runs the session to let it go first (False: SessionOwnedElsewhere at once).
    ask_owner: bool
    watch: Watch
    #: Tells the worker that asked how the request goes, before the answer (served for another worker).
    tell: Tell | None = None
    #: Which client asks, when it says (`client_of`).
    client: str | None = None

    async def live(self) -> LiveSession:
        return await self.state.sessions.get(self.session_id, ask_owner=self.ask_owner)


def _reached(request: web.Request, *, ask_owner: bool = True) -> _Serving:
    """Serving a request on the worker it reached."""
    return _Serving(
        request.app[STATE],
        _session_id(request),
        ask_owner,
        lambda events: sse.while_connected(request, events),
        client=client_of(request),
    )


def client_of(request: web.Request) -> str | None:
    """The client id a request gives in `CLIENT_HEADER` (the CLI's terminals do), if a sane one."""
    said = request.headers.get(CLIENT_HEADER)
    return said if said and len(said) <= _LONGEST_CLIENT_ID and said.isprintable() else None


_LONGEST_CLIENT_ID = 64


async def _as_they_come(events: AsyncIterator[StreamEvent]) -> AsyncGenerator[StreamEvent, None]:
    """`events`, closed with this generator."""
    try:
        async for event in events:
            yield event
    finally:
        if isinstance(events, AsyncGenerator):
            await events.aclose()


async def _accept(
    serving: _Serving, content: str, *, outcome_only: bool = False
) -> tuple[LiveSession, Subscription, Ticket]:
    """Attach to the session and queue the message: the caller owns the subscription (of a
    caller that waits only for the turn's outcome when `outcome_only`, see `LiveSession.subscribe`).

    Requests get through this a few at a time (`ServerState.accepting`): 200 clients posting at
    once would otherwise do all of it in one turn of the event loop, while every reply already
    streaming waits. The body is read before: four slow uploads must not hold every slot.
    """
    async with serving.state.accepting:
        live = await serving.live()
        with changes_by_person():  # attaching may resume the session: the client's act (see follow_events)
            subscription = await live.subscribe(outcome_only=outcome_only, client=serving.client)
        try:
            ticket = await live.queue(content)
        except BaseException:
            subscription.close()
            raise
    return live, subscription, ticket


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
        attached=live.clients,
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
        first_message=s.first_message,
    )


# --- sessions ------------------------------------------------------------------------------


@documented(
    "Start a session with an agent.",
    body=CreateSession,
    # 422: an `agent_spec` that is not a valid agent (deployed like the admin API's)
    responses={
        201: SessionOut,
        403: ProblemOut,
        404: ProblemOut,
        409: ProblemOut,
        422: ProblemOut,
        503: ProblemOut,
    },
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
    after = decode_cursor(query.cursor) if query.cursor else None
    # One more than the page tells whether there is a next one.
    found = await state.sessions.list_sessions(
        agent=query.agent, status=query.status, limit=query.limit + 1, after=after
    )
    page = found[: query.limit]
    more = len(found) > query.limit
    live = state.sessions.live
    return json_reply(
        SessionList(
            sessions=[_summary_out(s, live.get(s.session_id)) for s in page],
            next_cursor=encode_cursor(list_key(page[-1])) if more and page else None,
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
        metadata = spec.get("metadata") or {}
        if not isinstance(metadata, dict):
            where = FieldError("body.agent_spec.metadata", "must be an object (name, description, ...)")
            raise HttpProblem(422, "agent_spec is invalid", [where], "invalid-agent")
        metadata = dict(metadata)
        metadata.setdefault("name", body.agent)
        spec["metadata"] = metadata
        named = metadata["name"]
    if named != body.agent:
        raise HttpProblem(
            422,
            "agent_spec names another agent",
            [
                FieldError(
                    "body.agent_spec.metadata.name",
                    f"must be {body.agent!r} (the session's agent), got {named!r}",
                )
            ],
        )
    prompts = body.prompts or {}
    if "agent.yaml" in prompts:
        # (it would silently take the place of agent_spec)
        where = FieldError(
            "body.prompts.agent.yaml", "agent.yaml is agent_spec: send it there, not as a prompt"
        )
        raise HttpProblem(422, "agent_spec is invalid", [where], "invalid-agent")
    files = {**prompts, "agent.yaml": yaml.safe_dump(spec, sort_keys=False, allow_unicode=True)}
    try:
        deployed = await asyncio.to_thread(state.agents.files, body.agent)
    except AgentNotFound:
        deployed = {}
    if deployed != files:
        await deploy_files(state.agents, body.agent, files, _inline_field)


def _inline_field(problem: Problem) -> FieldError:
    """Where a problem of an inline agent is in the request: a prompt of `prompts`, else `agent_spec`
    (the agent.yaml it becomes is never seen by the client: its lines would locate nothing)."""
    file = problem.location.file if problem.location is not None else None
    if file and file != "agent.yaml":
        return FieldError(f"body.prompts.{file}", problem.message)
    return FieldError("body.agent_spec", problem.message)


def encode_cursor(key: ListKey) -> str:
    """The `next_cursor` of a page whose last session has `key` (the dashboard's Older link too)."""
    updated_at, session_id = key
    return base64.urlsafe_b64encode(f"{_iso(updated_at)}|{session_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> ListKey:
    """The `ListKey` a cursor from `encode_cursor` stands for; a 400 problem for any other text."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        updated, sep, session_id = text.partition("|")
        updated_at = datetime.fromisoformat(updated) if sep else None
    except (binascii.Error, UnicodeDecodeError, ValueError):
        updated_at = None
    if updated_at is None or updated_at.tzinfo is None:
        message = "invalid cursor: pass the next_cursor of a previous page"
        raise HttpProblem(400, message, (FieldError("query.cursor", message),), "validation")
    return updated_at, session_id


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


@documented("Stop a session and delete its files.", responses={204: None, 404: ProblemOut})
async def delete_session(request: web.Request) -> web.Response:
    """DELETE /api/v1/sessions/{id} -> 204."""
    return await _at_session(request, "delete")


async def _delete(serving: _Serving, _body: None) -> web.Response:
    # a client's (`duragent session delete`), never the agent's: committed as the person's
    with changes_by_person():
        await serving.state.sessions.delete(serving.session_id)
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
    message = str(event.data.get("message", "the turn failed"))
    status = turn_error_status(code)
    # (`POST …/retry` runs it again: sent again, the message would stand twice in the history)
    retryable = {"retryable": bool(event.data.get("retryable"))}
    return HttpProblem(
        status, message, type_name=code if status != 502 else f"turn-{code}", extensions=retryable
    )


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
    responses={
        200: MessageReply,
        202: (PendingApproval, Queued, Paused),
        404: ProblemOut,
        409: ProblemOut,
        502: ProblemOut,
        503: ProblemOut,
    },
)
async def send_message(request: web.Request) -> web.Response:
    """POST /api/v1/sessions/{id}/messages."""
    return await _at_session(request, "message", await read_body(request, SendMessage))


async def _send(serving: _Serving, body: SendMessage) -> web.Response:
    live, subscription, ticket = await _accept(serving, body.content, outcome_only=True)
    try:
        if ticket.ahead and not _turns_ahead_run_for_it(live):
            return json_reply(Queued(position=ticket.ahead), 202)
        events = serving.watch(own_turn(_unless_a_turn_ahead_asks(subscription, ticket), ticket))
        async with contextlib.aclosing(events):
            return await _wait_for_outcome(live, events, approve=False)
    except _TurnAheadAsks:
        return json_reply(Queued(position=ticket.ahead), 202)
    except sse.ClientGone:
        return _client_gone_reply()
    finally:
        subscription.close()


class _TurnAheadAsks(Exception):
    """A turn ahead of the request's own asked a person: the request answers `queued` now."""


async def _unless_a_turn_ahead_asks(
    events: AsyncIterable[StreamEvent], ticket: Ticket
) -> AsyncIterator[StreamEvent]:
    """`events`, until a turn ahead of the ticket's asks for an approval (_TurnAheadAsks): the
    request waiting alone behind it would wait, silent, for an answer nobody gives from there."""
    async for event in events:
        if event.event == "approval_required" and not ticket.started.done():
            raise _TurnAheadAsks
        yield event


def _turns_ahead_run_for_it(live: LiveSession) -> bool:
    """True when a waiting request is the only client of a pause-mode session: the turns ahead of
    its message run because it is attached, and would pause as it left with a 202 (its message then
    waiting for the next client), so it waits for its own turn as it would with nothing ahead.
    Not when a turn ahead waits for a person's answer: it would wait, silent, until the approval
    times out."""
    return live.settings.on_disconnect == "pause" and live.attached <= 1 and not live.waiting_approvals()


@documented(
    "Send a message and stream its turn as server-sent events (start, token, tool_call, tool_result, "
    "approval_required, status, done, error, cancelled).",
    body=SendMessage,
    responses={404: ProblemOut, 409: ProblemOut, 503: ProblemOut},
    sse=True,
)
async def stream_message(request: web.Request) -> web.StreamResponse:
    """POST /api/v1/sessions/{id}/stream (the turn is streamed from its owner when another worker
    keeps the session: `_stream_from_owner`)."""
    body = await read_body(request, SendMessage)
    serving = _reached(request)
    for _attempt in range(_OWNER_ATTEMPTS):
        try:
            live, subscription, ticket = await _accept(serving, body.content)
        except SessionOwnedElsewhere:
            if serving.state.owner_requests is None:
                raise
            relayed = await _stream_from_owner(request, serving, body)
            if relayed is not None:
                return relayed
            continue  # the session changed hands: look for its owner again
        return await _stream_here(request, live, subscription, ticket)
    raise SessionOwnedElsewhere(serving.session_id)


async def _stream_here(
    request: web.Request, live: LiveSession, subscription: Subscription, ticket: Ticket
) -> web.StreamResponse:
    """Stream the turn of `ticket` (turns ahead of it skipped) from the session on this worker."""
    try:
        response = await sse.open_stream(request)
        if ticket.ahead:
            # Said at once, or the client hears nothing until the turns ahead end: a comment,
            # which clients that know only the Rust event names skip (`duragent send` shows it).
            await response.write(f": {QUEUED_COMMENT.format(ahead=ticket.ahead)}\n\n".encode())
            waiting = live.waiting_approvals()
            if waiting:
                await response.write(sse.behind_approval(waiting[0].get("call_id")))
        state = {"mine": False}

        def accept(event: StreamEvent) -> tuple[bool | bytes, bool]:
            if not state["mine"]:
                if not ticket.started.done():
                    if event.event == "approval_required":
                        return sse.behind_approval(event.data.get("call_id")), False
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


async def _stream_from_owner(
    request: web.Request, serving: _Serving, body: SendMessage
) -> web.StreamResponse | None:
    """Stream a message's turn from the worker that keeps the session; None when no worker took it
    (the session changed hands: look again).

    The owner queues the message and stays attached for this client until the turn ends
    (`_turn_for_another_worker`); the events come from the session's relay, followed from before
    the message was handed over. Until the owner has queued it, its refusal (404, 409) is the answer.
    """
    state = serving.state
    owners = state.owner_requests
    assert owners is not None  # (checked by the caller)
    after = Position(await state.workspace.stores.sessions.last_seq(serving.session_id))
    relay = await state.sessions.follow(serving.session_id, after)
    turn = RemoteTurn(relay, after)
    asking = asyncio.ensure_future(
        owners.ask(serving.session_id, "stream", body.model_dump(mode="json"), turn.told)
    )
    asking.add_done_callback(functools.partial(_owner_turn_over, turn))
    try:
        waits: set[asyncio.Future[Any]] = {turn.accepted, asking}
        while not (turn.accepted.done() or asking.done()):
            await asyncio.wait(waits, timeout=sse.DISCONNECT_CHECK, return_when=asyncio.FIRST_COMPLETED)
            if sse.client_gone(request):
                return _client_gone_reply()
        if not turn.accepted.done():
            try:
                answer = asking.result()
            except OwnerStopped as exc:
                raise HttpProblem(503, str(exc)) from None
            if answer is None or answer.get("retry"):
                return None
            return _owner_answer(answer)  # (a refusal: raised as its problem)
        response = await sse.open_stream(request)
        await sse.pump(request, response, turn, turn.accept, keep_alive=_keep_alive(request))
        return response
    finally:
        turn.close()
        if not asking.done():
            asking.cancel()  # (its owner stops following the turn for this client)
        await asyncio.wait({asking})  # (its row deleted)


def _owner_turn_over(turn: RemoteTurn, asking: asyncio.Future[Answer | None]) -> None:
    """The owner answered (the turn ended there) or stopped serving: what the stream needs of it."""
    if asking.cancelled():
        return
    error = asking.exception()
    if isinstance(error, OwnerStopped):
        turn.fail(str(error))
        return
    if error is not None:
        # (a database error's text names hosts and ports: it goes to the log, not to the client)
        log.warning("handing a streamed message to the session's worker failed: %s", error)
        turn.fail(
            "the worker running the session could not be reached; "
            "read the session's messages before sending it again"
        )
        return
    answer = asking.result() or {}
    if "problem" in answer or "status" not in answer:
        problem = answer.get("problem") or {}
        turn.fail(
            str(problem.get("detail") or answer.get("error") or "the worker running the session stopped")
        )
        return
    ended = json.loads(str(answer.get("text") or "{}")).get("end")
    if isinstance(ended, dict):
        position = Position.parse(str(ended["id"]))
        turn.finish(StreamEvent(position, str(ended["event"]), dict(ended["data"])))


async def _turn_for_another_worker(serving: _Serving, body: SendMessage) -> web.Response:
    """Serve a streamed message for the worker whose client streams it (`_stream_from_owner`):
    queue it here, tell that worker where its turn starts, and stay attached until the turn ends
    (a pause-mode session runs it as for a client here); the answer is the turn's last event."""
    _, subscription, ticket = await _accept(serving, body.content)
    tell = serving.tell
    try:
        if tell is not None:
            await tell({"ahead": ticket.ahead})
        # (`wait`, unlike awaiting it, never cancels the session's future when this is cancelled)
        await asyncio.wait({ticket.started})
        if tell is not None:
            started = ticket.started
            await tell({"cancelled": True} if started.cancelled() else {"start": str(started.result())})
        last: StreamEvent | None = None
        events = serving.watch(own_turn(subscription, ticket))
        async with contextlib.aclosing(events):
            async for event in events:
                last = event
        end = None if last is None else {"id": str(last.position), "event": last.event, "data": last.data}
        return web.json_response({"end": end}, dumps=functools.partial(json.dumps, default=str))
    finally:
        subscription.close()


@documented(
    "Follow everything a session does, as server-sent events with `id:` positions. Send "
    "`Last-Event-ID` (or `?after=`) to replay what was missed first; `?after=0` replays everything. "
    "The stream ends after `session_end`; an ended session with nothing left to send answers 204.",
    query=EventsQuery,
    responses={204: None, 404: ProblemOut},
    sse=True,
)
async def follow_events(request: web.Request) -> web.StreamResponse:
    """GET /api/v1/sessions/{id}/events."""
    query = read_query(request, EventsQuery)
    header = request.headers.get("Last-Event-ID")
    raw = header or query.after
    try:
        after = Position.parse(raw) if raw else None
    except ValueError:
        message = f"invalid event position {raw!r}: expected `12` or `12.3`"
        field = "header.Last-Event-ID" if header else "query.after"
        raise HttpProblem(400, message, (FieldError(field, message),), "validation") from None
    state, session_id = request.app[STATE], _session_id(request)
    unseen = await _unseen_of_ended(state, session_id, after)
    if unseen is not None:
        if not unseen:
            return web.Response(status=204)
        response = await sse.open_stream(request)
        await response.write(b"".join(sse.frame(event) for event in unseen))
        return response
    # On stateless workers this relays the session from whichever worker runs it. A client
    # attaching (`duragent attach`, a chat coming back) resumes a session paused for want of one:
    # the person's act, committed as theirs (the turn it lets run is the agent's).
    with changes_by_person():
        subscription = await state.sessions.follow(session_id, after, client=client_of(request))
    try:
        response = await sse.open_stream(request)
        # (the feed closes after `session_end`, ending the stream: LiveSession.end, the relay)
        await sse.pump(
            request, response, subscription, lambda event: (True, False), keep_alive=_keep_alive(request)
        )
        return response
    finally:
        subscription.close()


async def _unseen_of_ended(
    state: ServerState, session_id: str, after: Position | None
) -> list[StreamEvent] | None:
    """What a client following an ended session has not seen yet (None: the session goes on).

    Read from the store: an ended session is not loaded, nor held loaded, for a stream that could
    only wait forever (nothing comes after `session_end`).
    """
    store = state.workspace.stores.sessions
    live = state.sessions.live.get(session_id)
    status = live.status if live is not None else (await resume(store, session_id)).status
    if status != "ended":
        return None
    if after is None:
        return []
    stored = await store.read(session_id, SessionReadOptions(after_seq=after.seq))
    return [from_stored(event) for event in stored if Position(event.seq) > after]


@documented(
    "Decide a tool call that waits for approval; waits for the turn like POST /messages.",
    body=Approve,
    responses={
        200: ApprovalComplete,
        202: (PendingApproval, Paused),
        400: ProblemOut,
        404: ProblemOut,
        409: ProblemOut,
        502: ProblemOut,
        503: ProblemOut,
    },
)
async def approve(request: web.Request) -> web.Response:
    """POST /api/v1/sessions/{id}/approve {call_id, decision}."""
    return await _at_session(request, "approve", await read_body(request, Approve))


async def _approve(serving: _Serving, body: Approve) -> web.Response:
    state = serving.state
    live = await serving.live()
    if live.status == "ended":
        raise SessionEnded(live.session_id)  # (409 as for a message: not "nothing waits")
    pending = state.approvals.pending(live.session_id)
    asked = any(p.call_id == body.call_id for p in pending)
    # The turn stopped after asking (paused at a safe point) and nobody is asked now: resumed,
    # it asks again, and this answer is that question's.
    stopped = not asked and any(a.get("call_id") == body.call_id for a in live.stopped_approvals())
    if not asked and not stopped:
        if pending:
            message = f"call_id mismatch: expected {pending[0].call_id}"
            raise HttpProblem(400, message, (FieldError("body.call_id", message),), "validation")
        raise HttpProblem(404, "no pending approval for this session", type_name="not-found")
    with changes_by_person():  # attaching may resume the session: the client's act (see follow_events)
        subscription = await live.subscribe(client=serving.client)
    try:
        if stopped:
            seen: list[StreamEvent] = []
            try:
                # the client's answer resumes the session: committed as the person's (the turn
                # it takes up stays the agent's, and so does its asking again)
                with changes_by_person():
                    asked_now = await live.take_up(subscription, body.call_id, seen)
            except TimeoutError:
                raise HttpProblem(
                    409, f"the session's turn did not ask for call {body.call_id} again", type_name="conflict"
                ) from None
            if not asked_now:
                # it asked another call of the batch first, or went on without asking (the policy
                # allows the call now): the client hears what happened instead
                replay = serving.watch(_replayed(seen, subscription))
                async with contextlib.aclosing(replay):
                    return await _wait_for_outcome(live, replay, approve=True)
        # (the turn writes the decision down: as the person's, see `changes_for_answer`)
        live.decide(body.call_id, body.decision)
        events = serving.watch(_after_decision(subscription, body.call_id))
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
    """The turn's events after deciding `call_id`, to its end or to the pause for its next question.

    (Not to the next `approval_required` alone: the pause follows it once stored, a database round
    trip later, and `_wait_for_outcome` answers 202 on that pause.) The question of `call_id`
    itself, and the pause for it, are left out until the decision is stored: a call is listed as
    waiting (and may be answered) a moment before its question is stored and the session paused
    for it, and that pause is not what the answer led to.
    """
    decided = False
    async for event in subscription:
        if event.event == "approval_decision" and event.data.get("call_id") == call_id:
            decided = True
        if not decided and _asking(event, call_id):
            continue
        yield event
        if ends_turn(event):
            return


def _asking(event: StreamEvent, call_id: str) -> bool:
    """True for the question of `call_id` and the session's pause for an approval."""
    if event.event == "approval_required":
        return event.data.get("call_id") == call_id
    return event.event == "status" and event.data.get("reason") == APPROVAL_PAUSE_REASON


@documented(
    "Stop the running turn now (what was said so far is kept).",
    responses={200: Accepted, 404: ProblemOut, 409: ProblemOut},
)
async def cancel(request: web.Request) -> web.Response:
    """POST /api/v1/sessions/{id}/cancel."""
    return await _at_session(request, "cancel")


async def _cancel(serving: _Serving, _body: None) -> web.Response:
    live = await serving.live()
    # a client's (Ctrl-C in `duragent chat`, a program), never the agent's: the turn's `cancelled`
    # is committed as the person's
    with changes_by_person():
        cancelled = await live.cancel()
    return json_reply(Accepted(status="cancelled" if cancelled else "idle", session_id=live.session_id))


@documented(
    "Continue a paused session: its unfinished turn, then queued messages.",
    responses={202: Accepted, 404: ProblemOut, 409: ProblemOut},
)
async def resume_session(request: web.Request) -> web.Response:
    """POST /api/v1/sessions/{id}/resume."""
    return await _at_session(request, "resume")


async def _resume(serving: _Serving, _body: None) -> web.Response:
    live = await serving.live()
    # a client's (`/resume` in `duragent chat`, a program): the session's `resumed` is committed as
    # the person's, the turn it runs on as the agent's
    with changes_by_person():
        await live.resume()
    return json_reply(Accepted(status=live.status, session_id=live.session_id), 202)


@documented(
    "Run the last turn again when it failed or was cancelled: the model answers its last step anew "
    "(`turn_retried`, then the turn's events; a partial reply the turn kept is left out). 409 when "
    "a turn runs, or the last did not fail.",
    responses={202: Accepted, 404: ProblemOut, 409: ProblemOut},
)
async def retry_turn(request: web.Request) -> web.Response:
    """POST /api/v1/sessions/{id}/retry."""
    return await _at_session(request, "retry")


async def _retry(serving: _Serving, _body: None) -> web.Response:
    live = await serving.live()
    await live.retry()
    return json_reply(Accepted(status=live.status, session_id=live.session_id), 202)


@documented(
    "End a session: any turn stops, `session_end` is recorded, it takes no more messages; its files stay.",
    responses={200: Accepted, 404: ProblemOut},
)
async def end_session(request: web.Request) -> web.Response:
    """POST /api/v1/sessions/{id}/end."""
    return await _at_session(request, "end")


async def _end(serving: _Serving, _body: None) -> web.Response:
    live = await serving.live()
    # a client's (`/end` in the REPL, a program), never the agent's: committed as the person's,
    # also when served for the worker the request reached (`serve_for_another_worker`)
    with changes_by_person():
        await live.end("ended by client")
    return json_reply(Accepted(status=live.status, session_id=live.session_id))


def _keep_alive(request: web.Request) -> float:
    return request.app[STATE].keep_alive


# --- a session another worker runs -------------------------------------------------------------


class _Action(NamedTuple):
    """A request another worker may have to serve: its body, how it is served, and whether the
    worker it reached first asks the session's owner to let the session go."""

    body: type[Body] | None
    serve: Callable[[_Serving, Any], Awaitable[web.Response]]
    #: False when what it needs (a turn waiting for approval, running) keeps the session where it is.
    ask_owner: bool


_ACTIONS = {
    "approve": _Action(Approve, _approve, ask_owner=False),
    "cancel": _Action(None, _cancel, ask_owner=False),
    "message": _Action(SendMessage, _send, ask_owner=True),
    "resume": _Action(None, _resume, ask_owner=True),
    "retry": _Action(None, _retry, ask_owner=True),
    "end": _Action(None, _end, ask_owner=True),
    "delete": _Action(None, _delete, ask_owner=True),
    # (served for another worker only: `stream_message` hands it over itself)
    "stream": _Action(SendMessage, _turn_for_another_worker, ask_owner=True),
}
#: How many times a request looks for a session's owner, which may hand the session on meanwhile.
_OWNER_ATTEMPTS = 3

T = TypeVar("T")


async def _at_session(request: web.Request, action: str, body: Body | None = None) -> web.Response:
    """Serve `action` on the request's session here; when another worker keeps the session (its
    turn waits for an approval, or runs on), that worker serves it and its answer is this one."""
    state = request.app[STATE]
    spec = _ACTIONS[action]
    serving = _reached(request, ask_owner=spec.ask_owner)
    owners = state.owner_requests
    for _attempt in range(_OWNER_ATTEMPTS):
        try:
            return await spec.serve(serving, body)
        except SessionOwnedElsewhere:
            if owners is None:
                raise
        body_json = body.model_dump(mode="json") if body is not None else {}
        try:
            answer = await _until_answered(request, owners.ask(serving.session_id, action, body_json))
        except sse.ClientGone:
            return _client_gone_reply()
        except OwnerStopped as exc:
            raise HttpProblem(503, str(exc)) from None
        if answer is not None and not answer.get("retry"):
            return _owner_answer(answer)
        # Nobody took it, or its taker no longer runs the session: it changed hands, look again.
    raise SessionOwnedElsewhere(serving.session_id)


async def _until_answered(request: web.Request, asking: Coroutine[Any, Any, T]) -> T:
    """What `asking` returns; ClientGone (and `asking` cancelled) when the client hangs up first."""
    task = asyncio.ensure_future(asking)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=sse.DISCONNECT_CHECK)
            if done:
                return task.result()
            if sse.client_gone(request):
                raise sse.ClientGone()
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _owner_answer(answer: Answer) -> web.Response:
    """The response an owner's answer stands for (see `serve_for_another_worker`)."""
    problem = answer.get("problem")
    if problem is not None:
        errors = [FieldError(str(name), str(message)) for name, message in problem.get("errors", [])]
        raise HttpProblem(int(problem["status"]), str(problem["detail"]), errors, problem.get("type"))
    if "status" not in answer:
        raise HttpProblem(500, str(answer.get("error", "the worker running the session did not answer")))
    text = answer.get("text")
    if not text:
        return web.Response(status=int(answer["status"]))
    return web.Response(
        status=int(answer["status"]), text=str(text), content_type=str(answer["content_type"])
    )


async def serve_for_another_worker(
    state: ServerState, session_id: str, action: str, body: dict[str, Any], tell: Tell | None = None
) -> Answer:
    """Serve a request another worker got for a session this worker runs; the answer it gives its
    client (`_owner_answer`), or `{"retry": true}` when this worker does not run the session.
    `tell` tells that worker how a long request goes before it ends (a streamed turn's start)."""
    spec = _ACTIONS.get(action)
    if spec is None:
        return {"error": f"this worker does not serve {action!r} requests (an older Duragent?)"}
    if state.sessions.closing and action != "cancel":
        # This worker stops: it keeps the session while its turn runs (a cancel stops that turn),
        # and starts nothing new. The worker that asked serves the request once it is let go.
        await state.sessions.let_go(session_id)
        return {"retry": True}
    serving = _Serving(state, session_id, ask_owner=False, watch=_as_they_come, tell=tell)
    try:
        parsed = spec.body.model_validate(body) if spec.body is not None else None
        response = await spec.serve(serving, parsed)
    except SessionLocked:
        # Not run here (any more), or this copy is out of date: nothing was done; ask again.
        return {"retry": True}
    except Exception as exc:
        problem = problem_of(exc)
        if problem is None:
            log.exception("session %s: serving %r for another worker failed", session_id, action)
            problem = HttpProblem(500, "internal server error (see the server log)")
        errors = [[error.field, error.message] for error in problem.errors]
        return {
            "problem": {
                "status": problem.status,
                "detail": problem.detail,
                "type": problem.type_name,
                "errors": errors,
            }
        }
    return {"status": response.status, "content_type": response.content_type, "text": response.text}
