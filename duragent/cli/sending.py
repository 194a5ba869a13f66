"""Sending a message from the terminal: which agent and session, then one turn followed to its end.

Shared by `duragent send` (both its typer command and the fast path that answers a warm `send`
without importing typer or aiohttp) and by `chat`/`attach`. No typer here, and the HTTP client
is whatever `ApiClient` the caller passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from duragent.client.http import ApiClient
    from duragent.client.state import ClientState

#: `send`'s exit status when the turn waits for an approval.
EXIT_APPROVAL = 3
#: `send`'s exit status when the agent's files do not load (a ConfigError's).
EXIT_AGENT_INVALID = 2
#: The error code of a turn the agent's broken files stopped (`duragent.runtime.loop.AGENT_INVALID`).
AGENT_INVALID = "agent_invalid"


def message_text(message: str | bytes, where: str = "") -> str:
    """The message as UTF-8 text: bytes read from stdin, or an argument (which Python decodes
    with surrogateescape); UsageError naming the first byte that is not UTF-8 and what to do."""
    if isinstance(message, str):
        try:
            data = message.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # (a surrogate no byte stands for)
            data = message.encode("utf-8", "surrogatepass")
    else:
        data = message
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        from duragent.errors import UsageError

        where = f" {where}" if where else ""
        raise UsageError(
            f"the message{where} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}): "
            "convert it first, e.g. with `iconv -f latin1 -t utf-8`"
        ) from None
    # (stdin's line endings become new lines, as reading it as text does: `\r\n` is sent as `\n`)
    return text if isinstance(message, str) else text.replace("\r\n", "\n").replace("\r", "\n")


async def send_one(
    api: ApiClient, client: ClientState, info: dict[str, Any], content: str, *, as_json: bool, stream: bool
) -> int:
    from duragent.cli.render import TRUNCATED, Renderer
    from duragent.terminal_text import printable

    session_id = str(info["session_id"])
    if info.get("pending_approvals"):
        return await _queue_behind_approval(api, client, info, content, as_json=as_json)
    live = stream and not as_json and sys.stdout.isatty()
    out = Renderer()
    side = out if sys.stdout.isatty() else Renderer(out=sys.stderr)
    reply, usage, status = "", {}, "failed"
    error: dict[str, Any] | None = None
    calls: dict[str, dict[str, Any]] = {}
    approval: dict[str, Any] | None = None
    last_id: str | None = None
    if live:
        out.start_spinner()
    from duragent.client.http import ServerUnreachable, TurnCutOff
    from duragent.client.sse import BEHIND_APPROVAL_EVENT, QUEUED_EVENT

    position: int | None = None
    waited_for: dict[str, Any] | None = None  # an approval a turn ahead asks: this message waits
    try:
        async with contextlib.aclosing(api.stream(session_id, content)) as events:
            async for event in events:
                last_id = event.id or last_id
                data = event.data
                if event.event == "token" and live:
                    out.token(str(data.get("content", "")))
                elif event.event == QUEUED_EVENT:
                    position = int(data.get("position", 1))
                    if not as_json:
                        side.notice(queued_note(session_id, position))
                        if live:
                            out.start_spinner()
                elif event.event == BEHIND_APPROVAL_EVENT:
                    # This stream would wait, silent, until someone decides (up to the approval's
                    # timeout): say so now, as when the approval was asked before the message.
                    asked = (await api.session(session_id)).get("pending_approvals") or []
                    if asked:  # (else already decided: the turns go on, and so does this stream)
                        call_id = data.get("call_id")
                        waited_for = next((a for a in asked if a.get("call_id") == call_id), asked[0])
                        break
                elif event.event == "tool_call":
                    calls[str(data.get("call_id"))] = {
                        "call_id": data.get("call_id"),
                        "tool": data.get("tool"),
                        "arguments": data.get("arguments") or {},
                    }
                    if not as_json:
                        side.tool_call(
                            str(data.get("call_id")), str(data.get("tool")), dict(data.get("arguments") or {})
                        )
                elif event.event == "tool_result":
                    call = calls.setdefault(
                        str(data.get("call_id")), {"call_id": data.get("call_id"), "tool": data.get("tool")}
                    )
                    call.update(
                        ok=bool(data.get("ok")),
                        duration_ms=data.get("duration_ms"),
                        result=data.get("content"),
                    )
                    if not as_json:
                        side.tool_result(
                            str(data.get("call_id")),
                            str(data.get("tool")),
                            bool(data.get("ok")),
                            None if data.get("duration_ms") is None else int(data["duration_ms"]),
                            str(data.get("content", "")),
                        )
                    if live:
                        out.start_spinner()
                elif event.event == "approval_required":
                    approval = dict(data)
                    status = "pending_approval"
                elif event.event == "done":
                    reply, usage = (
                        str(data.get("content", "")),
                        dict(data.get("turn_usage") or data.get("usage") or {}),
                    )
                    status = "truncated" if data.get("truncated") else "complete"
                    if status == "truncated":
                        error = {"code": "truncated", "message": TRUNCATED}
                    if live:
                        out.reply(reply)
                    elif not as_json:
                        out.write(printable(reply) + ("" if reply.endswith("\n") else "\n"))
                elif event.event == "error":
                    status, error = "failed", {"code": data.get("code"), "message": data.get("message")}
                    # (the model calls of a failed turn were paid for too: an empty reply's included)
                    usage = dict(data.get("turn_usage") or data.get("usage") or {})
                elif event.event == "cancelled":
                    status, error = "cancelled", {"code": "cancelled", "message": "the turn was cancelled"}
                elif event.event == "status" and data.get("to") == "paused" and approval is None:
                    status, error = "paused", {"code": "paused", "message": str(data.get("reason", "paused"))}
    except asyncio.CancelledError:
        # Ctrl-C: closing the stream detaches; the session goes on (or pauses) on the server.
        out.close()
        client.attached(str(info["agent"]), session_id)
        client.saw(session_id, last_id)
        client.save()
        side.line(detached_note(session_id, str(info.get("on_disconnect") or "continue")))
        raise
    except ServerUnreachable as exc:
        out.close()
        if last_id is None:
            raise  # (nothing came back: the message may not have reached the server)
        # The turn started (its message is stored): say where it is, not "cannot reach".
        client.attached(str(info["agent"]), session_id)
        client.saw(session_id, last_id)
        client.save()
        raise TurnCutOff(exc.url, exc.reason, session_id) from None
    out.close()
    client.attached(str(info["agent"]), session_id)
    client.saw(session_id, last_id)
    client.save()
    if waited_for is not None:
        return _say_queued_behind(api, session_id, waited_for, position, as_json=as_json)
    result: dict[str, Any] = {
        "session_id": session_id,
        "reply": reply,
        "tool_calls": list(calls.values()),
        "usage": usage,
        "status": status,
    }
    if error:
        result["error"] = error
    if approval is not None:
        result["approval"] = approval_help(api, session_id, approval)
    broken = error is not None and error.get("code") == AGENT_INVALID
    # a failed or cancelled turn is run again by /retry: say in which session, and how
    retryable = status in ("failed", "cancelled") and not broken
    if retryable:
        result["retry"] = retry_help(api, session_id)
    if as_json:
        from duragent.cli.context import print_json

        print_json(result)
    elif broken and error is not None:
        from duragent.errors import ConfigError

        # as when the agent is not served at all (`explain_missing_agent`): exit 2, the files' problems
        raise ConfigError(str(error["message"]))
    elif error:
        side.error(f"✗ {error['message']} ({error['code']})")
        if retryable:
            side.line(f"the turn is in session {session_id}: {result['retry']['terminal']} runs it again")
    elif approval is not None:
        side.approval(str(approval.get("tool", "")), str(approval.get("command", "")))
        side.line(f"decide with: duragent attach {session_id}")
    if broken:
        return EXIT_AGENT_INVALID
    return 0 if status == "complete" else EXIT_APPROVAL if status == "pending_approval" else 1


async def _queue_behind_approval(
    api: ApiClient, client: ClientState, info: dict[str, Any], content: str, *, as_json: bool
) -> int:
    """The session's turn waits for a person: queue the message behind it and say so at once
    (streaming it would wait, silent, until someone decides, up to the approval's timeout)."""
    session_id = str(info["session_id"])
    _, body = await api.send(session_id, content)
    client.attached(str(info["agent"]), session_id)
    client.save()
    approval = dict(info["pending_approvals"][0])
    return _say_queued_behind(api, session_id, approval, body.get("position"), as_json=as_json)


def _say_queued_behind(
    api: ApiClient, session_id: str, approval: dict[str, Any], position: object, *, as_json: bool
) -> int:
    """Say that the message is queued behind a person's decision on `approval`, and how to decide."""
    from duragent.cli.render import Renderer

    if as_json:
        from duragent.cli.context import print_json

        print_json(
            {
                "session_id": session_id,
                "status": "queued",
                "position": position,
                "approval": approval_help(api, session_id, approval),
            }
        )
        return EXIT_APPROVAL
    side = Renderer(out=sys.stdout if sys.stdout.isatty() else sys.stderr)
    side.approval(str(approval.get("tool", "")), str(approval.get("command", "")))
    side.line(f"your message is queued behind this decision; decide with: duragent attach {session_id}")
    return EXIT_APPROVAL


def print_json_failure(error: Exception) -> None:
    """`send --json`'s object for a message that could not be sent at all (an unknown agent or
    session, no server), or whose turn a server that went away cut off (with its `session_id`):
    a script reading stdout gets the failure too, not nothing."""
    import json

    from duragent.client.http import ServerUnreachable, TurnCutOff
    from duragent.errors import ConfigError, NotFound, UsageError

    code = (
        "not_found"
        if isinstance(error, NotFound)
        else "config_error"
        if isinstance(error, ConfigError)
        else "usage"
        if isinstance(error, UsageError)
        else "unreachable"
        if isinstance(error, ServerUnreachable)
        else "error"
    )
    failure: dict[str, Any] = {"status": "failed", "error": {"code": code, "message": str(error)}}
    if isinstance(error, TurnCutOff):
        failure = {"session_id": error.session_id, **failure}  # (the turn is there)
    print(json.dumps(failure, indent=2))


def queued_note(session_id: str, ahead: int) -> str:
    """Why `send` prints nothing yet: its message waits for the turns ahead of it (a turn a
    restart stopped, taken up first, or another client's)."""
    return (
        f"your message is queued behind {ahead} turn(s) of session {session_id}; "
        "its reply follows once they end"
    )


def detached_note(session_id: str, on_disconnect: str) -> str:
    """What Ctrl-C in `send` did: the turn was not cancelled, this client only stopped following it."""
    if on_disconnect == "pause":
        return (
            f"detached: session {session_id} pauses at the next safe point (on_disconnect: pause); "
            f"duragent attach {session_id} resumes it"
        )
    return f"detached: the turn goes on in session {session_id}; duragent attach {session_id}"


def approval_help(api: ApiClient, session_id: str, approval: dict[str, Any]) -> dict[str, Any]:
    call_id = str(approval.get("call_id", ""))
    return {
        "call_id": call_id,
        "tool": approval.get("tool"),
        "command": approval.get("command"),
        "arguments": approval.get("arguments") or {},
        "approve_with": {
            "terminal": f"duragent attach {session_id}",
            "http": {
                "method": "POST",
                "url": api.url(f"/api/v1/sessions/{session_id}/approve"),
                "body": {"call_id": call_id, "decision": "allow_once | allow_always | deny"},
            },
        },
    }


def retry_help(api: ApiClient, session_id: str) -> dict[str, Any]:
    """How to run a failed or cancelled turn again: from a terminal, or over HTTP."""
    return {
        "terminal": f"duragent attach {session_id}, then /retry",
        "url": api.url(f"/api/v1/sessions/{session_id}/retry"),
    }


async def agent_name(api: ApiClient, agent: str | None, session: str | None) -> str:
    """The agent to talk to: --agent, the session's, or the only one there is (a warning on
    stderr when its files hold an edit that does not load: it answers as it was before; and one
    per warning its files load with, such as an unknown key)."""
    from duragent.errors import DuragentError

    name = await _pick_agent(api, agent, session)
    try:
        _, ready = await api.readyz()
    except (DuragentError, ValueError):
        return name  # (a warning only: the message goes on without it)
    problems = (ready.get("agents") or {}).get(name)
    if problems:
        warning = f"warning: agent {name!r} answers as its last valid version; its files do not load:"
        print(warning, file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
    for warning in (ready.get("agent_warnings") or {}).get(name, []):
        print(f"warning: {warning}", file=sys.stderr)
    # (the full command prints its own reading of duragent.yaml: these are the running server's)
    import duragent.cli

    for warning in [] if duragent.cli.config_read_here else ready.get("config_warnings") or []:
        print(f"warning: {warning} (in the running server's configuration)", file=sys.stderr)
    return name


async def _pick_agent(api: ApiClient, agent: str | None, session: str | None) -> str:
    from duragent.errors import UsageError

    if session is not None:
        info = await api.session(await full_id(api, session))
        if agent is not None and agent != info["agent"]:
            raise UsageError(
                f"session {info['session_id']} belongs to agent {info['agent']!r}, not {agent!r}: "
                "leave out --agent, or pick one of its sessions (`duragent session list`)"
            )
        return str(info["agent"])
    names = sorted(str(a["name"]) for a in await api.agents())
    if agent is not None:
        if agent not in names:
            await explain_missing_agent(api, agent, names)
        return agent
    if len(names) == 1:
        return names[0]
    if not names:
        return await _the_broken_agent(api)
    raise UsageError(f"there are several agents ({', '.join(names)}); pick one with --agent NAME")


async def _the_broken_agent(api: ApiClient) -> str:
    """When no agent is listed: raise why (the one agent whose files do not load, or there is
    none); its name if it loads again meanwhile."""
    from duragent.errors import ConfigError, UsageError

    _, ready = await api.readyz()
    broken = sorted(str(name) for name in ready.get("agents") or {})
    if len(broken) == 1:
        await explain_missing_agent(api, broken[0], [])
        return broken[0]
    if broken:
        raise ConfigError(
            f"no agent can answer: the files of {', '.join(broken)} do not load; "
            "`duragent agent validate` lists their problems"
        )
    raise UsageError("this workspace has no agents; create one with `duragent agent create NAME`")


async def full_id(api: ApiClient, text: str, argument: str = "--session") -> str:
    """The session id `text` names: the whole id, its name, or any unique start of the id, like git.
    UsageError naming `argument` when it is empty (every id starts with "")."""
    from duragent.errors import UsageError
    from duragent.ids import resolve_session

    if not text.strip():
        raise UsageError(
            f"{argument} is empty: give a session's id, its name or the start of its id "
            "(`duragent attach --list` shows them)"
        )
    listed = await api.sessions()
    return resolve_session(
        text, ((str(s["session_id"]), (s.get("metadata") or {}).get("name")) for s in listed)
    )


async def explain_missing_agent(api: ApiClient, agent: str, names: list[str]) -> None:
    """Raise the reason `agent` is not served: its files' problems (`file:line:col`), or unknown."""
    from duragent.client.http import AgentNotFound, ApiError
    from duragent.errors import ConfigError

    try:
        await api.agent(agent)
    except ApiError as exc:
        if exc.status == 400:
            detail = exc.problem.get("detail") or exc.detail
            raise ConfigError(f"agent {agent!r} cannot answer until its files are fixed:\n{detail}") from None
        raise
    except AgentNotFound:
        raise AgentNotFound(agent, names) from None


async def pick_session(
    api: ApiClient, client: ClientState, agent: str, session: str | None, new: bool
) -> tuple[dict[str, Any], bool]:
    """The session to use and whether it existed: --session, a new one, or this terminal's last one."""
    from duragent.client.http import SessionGone, SessionNotFound

    if session is not None:
        info = await api.session(await full_id(api, session))
        if info.get("status") == "ended":
            raise SessionGone(409, f"session {session} has ended; `duragent chat --new` starts a new one")
        return info, True
    last = None if new else client.last_session.get(agent)
    if last is not None:
        try:
            info = await api.session(last)
        except SessionNotFound:
            client.forget(last)
        else:
            if info.get("status") != "ended":
                return info, True
    return await api.create_session(agent), False
