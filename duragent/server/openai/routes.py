"""The OpenAI-compatible routes: GET /v1/models, POST /v1/chat/completions and POST /v1/responses.

Each agent is a model. A request naming a session (`X-Duragent-Session`, else
`metadata.session_id`, else `user`) sends its last message to that session, made for the
agent on first use; any other request is stateless: its `messages` are the whole
conversation and nothing is stored. See docs/openai.md.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from duragent.agents.catalog import AgentNotFound
from duragent.server import sse
from duragent.server.bodies import read_body
from duragent.server.openai.bodies import ChatCompletionRequest
from duragent.server.openai.completions import Completion, FinalReply, TurnProblem, reply_pieces
from duragent.server.openai.errors import SESSION_HEADER, SHOULD_RETRY, error_body
from duragent.server.problems import FieldError, HttpProblem
from duragent.server.state import STATE, ServerState
from duragent.sessions.live import LiveSession, SessionEnded
from duragent.sessions.stream import StreamEvent, ends_turn_unless_asking, own_turn
from duragent.stores.base import changes_by_person

#: What a session made by this API records about where it came from.
CREATED_BY = {"created_by": "openai"}


def _model(name: str, created: int) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": "duragent"}


async def list_models(request: web.Request) -> web.Response:
    """GET /v1/models: every agent that loads, as a model."""
    state = request.app[STATE]
    names = [s.name for s in state.agents.summaries() if s.valid]
    return web.json_response({"object": "list", "data": [_model(n, int(state.started_at)) for n in names]})


async def get_model(request: web.Request) -> web.Response:
    """GET /v1/models/{model}."""
    state = request.app[STATE]
    name = request.match_info["model"]
    await _agent(state, name)
    return web.json_response(_model(name, int(state.started_at)))


async def _agent(state: ServerState, name: str) -> None:
    try:
        # in a thread: a cache miss reads and parses the agent's files
        await asyncio.to_thread(state.agents.get, name)
    except AgentNotFound as exc:
        known = ", ".join(exc.known) or "none"
        raise HttpProblem(
            404,
            f"the model {name!r} does not exist: models are this server's agents ({known})",
            [FieldError("body.model", "no such agent")],
            type_name="model-not-found",
        ) from None


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """POST /v1/chat/completions, streamed (`stream: true`) or not."""
    body = await read_body(request, ChatCompletionRequest)
    try:
        async with agent_turn(request, body) as turn:
            if body.stream:
                return await _stream(
                    request, body, turn.live, turn.events, turn.headers, stateless=turn.stateless
                )
            return await _whole(request, body, turn.live, turn.events, turn.headers, stateless=turn.stateless)
    except sse.ClientGone:
        return web.Response(status=499, reason="Client Closed Request")


@dataclass(frozen=True)
class AgentTurn:
    """The turn an OpenAI-style request started: its session, its events, the headers to send back."""

    live: LiveSession
    events: AsyncIterator[StreamEvent]
    headers: dict[str, str]
    #: No session was named: the client's messages were the whole conversation, nothing is kept.
    stateless: bool


@asynccontextmanager
async def agent_turn(request: web.Request, body: ChatCompletionRequest) -> AsyncIterator[AgentTurn]:
    """Start the turn `body` asks for, in the session it names or a stateless one; clean up after.

    Shared by /v1/chat/completions and /v1/responses (which builds a ChatCompletionRequest).
    """
    state = request.app[STATE]
    content = body.new_user_message()
    await _agent(state, body.model)
    named = body.named_session(request.headers.get(SESSION_HEADER))
    if named is None:
        live = state.sessions.stateless(body.model, body.history())
    else:
        live = await state.sessions.get_or_create(named, body.model, metadata=CREATED_BY)
        if live.agent.name != body.model:
            raise HttpProblem(
                400,
                f"session {named!r} talks to agent {live.agent.name!r}, not {body.model!r}",
                [FieldError("body.model", f"must be {live.agent.name!r} for this session")],
                type_name="session-agent-mismatch",
            )
    headers = {SESSION_HEADER: live.session_id} if named else {}
    with changes_by_person():  # attaching may resume the session: the client's act, not the agent's
        subscription = await live.subscribe()
    try:
        try:
            ticket = await live.queue(content)
        except SessionEnded:
            raise _ended(body, request, live.session_id, headers) from None
        yield AgentTurn(live, own_turn(subscription, ticket, ends_turn_unless_asking), headers, named is None)
    finally:
        subscription.close()
        if named is None:
            # Whatever happened, the stateless conversation is over: stop its turn, forget it.
            await live.cancel()
            await live.close(0)


def _ended(
    body: ChatCompletionRequest, request: web.Request, session_id: str, headers: dict[str, str]
) -> HttpProblem:
    """The 409 for a message to an ended session, naming the field that named it; not to be
    sent again (the SDKs retry a 409), since the session stays ended."""
    naming = body.session_naming(request.headers.get(SESSION_HEADER))
    source = naming[1] if naming else SESSION_HEADER
    return HttpProblem(
        409,
        f"session {session_id!r} has ended and takes no more messages",
        [FieldError(source, "name another session")],
        type_name="conflict",
        headers={**headers, SHOULD_RETRY: "false"},
    )


async def _whole(
    request: web.Request,
    body: ChatCompletionRequest,
    live: LiveSession,
    events: AsyncIterator[StreamEvent],
    headers: dict[str, str],
    *,
    stateless: bool,
) -> web.Response:
    try:
        async for piece in reply_pieces(sse.while_connected(request, events), live, stateless=stateless):
            if isinstance(piece, FinalReply):
                return web.json_response(Completion(body.model).whole(piece), headers=headers)
    except TurnProblem as problem:
        raise problem.as_http(headers) from None
    raise AssertionError("reply_pieces ends with a FinalReply or raises")


async def _stream(
    request: web.Request,
    body: ChatCompletionRequest,
    live: LiveSession,
    events: AsyncIterator[StreamEvent],
    headers: dict[str, str],
    *,
    stateless: bool,
) -> web.StreamResponse:
    """Chunks as OpenAI sends them, then `data: [DONE]`.

    The response starts with the first piece of the reply, so a turn that fails before saying
    anything (a stateless approval, a provider error) gets an ordinary error status; or with
    the first keep-alive, when the turn is quiet longer (a tool running, an approval awaited).
    """
    completion = Completion(body.model)
    with_usage = body.include_usage()
    response: web.StreamResponse | None = None

    async def keep_alive() -> None:
        # Clients and proxies give up on a connection that stays silent: start the reply.
        nonlocal response
        response = response or await start()
        await response.write(b": keep-alive\n\n")

    async def start() -> web.StreamResponse:
        opened = await open_event_stream(request, headers)
        await opened.write(
            _data(completion.chunk({"role": "assistant", "content": ""}, with_usage=with_usage))
        )
        return opened

    try:
        pieces = reply_pieces(
            sse.while_connected(request, events, on_idle=keep_alive, idle_every=_keep_alive(request)),
            live,
            stateless=stateless,
        )
        async for piece in pieces:
            response = response or await start()
            if isinstance(piece, FinalReply):
                ending = [completion.chunk({}, piece.finish_reason, with_usage=with_usage)]
                if with_usage:
                    ending.append(completion.usage_chunk(piece))
                await response.write(b"".join(_data(c) for c in ending) + b"data: [DONE]\n\n")
                break
            await response.write(_data(completion.chunk({"content": piece}, with_usage=with_usage)))
    except TurnProblem as problem:
        if response is None:
            raise problem.as_http(headers) from None
        # Mid-stream, as OpenAI does: an `error` object where a chunk would be (the SDKs raise it).
        await response.write(_data({"error": error_body(problem.status, problem.message, code=problem.code)}))
    except (ConnectionResetError, sse.ClientGone):
        if response is None:
            raise sse.ClientGone() from None
        return response  # started: nothing more can be sent to a client that left
    assert response is not None
    await response.write_eof()
    return response


async def open_event_stream(request: web.Request, headers: dict[str, str]) -> web.StreamResponse:
    """Start a `text/event-stream` answer (not cached or buffered by proxies) with `headers`."""
    opened = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    opened.headers.update(headers)
    await opened.prepare(request)
    return opened


def _data(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


def _keep_alive(request: web.Request) -> float:
    return request.app[STATE].keep_alive


async def responses_route(request: web.Request) -> web.StreamResponse:
    """POST /v1/responses (see duragent.server.openai.responses)."""
    from duragent.server.openai.responses import create_response

    return await create_response(request)
