"""The fast path of `duragent chat` and `attach`: to the workspace's running server, or to one it starts.

The full commands import typer, pydantic (the configuration loader) and aiohttp before the
first request: 0.4-0.6 s before the prompt shows. A terminal session needs only the data
directory (its input history, what it has seen) and the server's URL and token, all of which
`duragent.cli.quick_send` reads with the standard library; the configuration is loaded later,
if ever (`/memory`). The session then runs exactly as the full command runs it
(`duragent.cli.chatting`), over `AsyncioApiClient`.

It answers only when it is sure: the plain options (`chat --agent/--session/--new`,
`attach [SESSION] --last/--list`), a configuration it can read without the full loader, and a
running, up-to-date server of this workspace, or none running at all (it then starts one as a cold
`send` does, through the launcher). Anything else returns None and the full command runs, which
restarts or explains the server as usual; so does a server that cannot be reached before the
session is shown. A new server that exits before it is ready is reported as a cold `send`
reports it.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from duragent.cli.chatting import Attachment
    from duragent.cli.quick_send import RunningServer
    from duragent.config import DuragentConfig

#: The options of each command this path reads, by every name they go by, to the parameter they
#: set (any other option goes to the full command); a test ties them to the typer commands'.
VALUED_OPTIONS = {
    "chat": {"--agent": "agent", "-a": "agent", "--session": "session", "-s": "session"},
    "attach": {},
}
SWITCHES = {
    "chat": {"--new": "new"},
    "attach": {"--list": "list_sessions", "-l": "list_sessions", "--last": "last"},
}


class TerminalOptions(NamedTuple):
    """What `chat` or `attach` was asked."""

    command: str
    agent: str | None = None
    session: str | None = None
    new: bool = False
    list_sessions: bool = False
    last: bool = False

    @property
    def lists_only(self) -> bool:
        """`attach` without a session to attach to only lists the open ones."""
        return self.command == "attach" and (self.list_sessions or (self.session is None and not self.last))


def quick_chat(command: str, args: list[str], env: Mapping[str, str] | None = None) -> int | None:
    """Run `chat`/`attach` against the running server; None when the full command must run."""
    env = os.environ if env is None else env
    options = parse_terminal_options(command, args)
    if options is None:
        return None
    # Start-up creates ~100,000 objects that live as long as the process (modules, classes,
    # prompt_toolkit's key bindings): searching them for garbage again and again cost ~5% of the
    # instructions to the prompt and a third of those at exit. Once loaded they are frozen.
    gc.disable()
    try:
        from duragent.cli.quick_send import running_server, started_server

        prompt = not options.lists_only and sys.stdin.isatty()
        server = running_server(env)
        if server is not None:
            _load_for_the_session(prompt=prompt)
        else:
            # None runs: start it as a cold `send` does, loading the session's modules meanwhile
            server = started_server(env, while_starting=lambda: _load_for_the_session(prompt=prompt))
        if server is None:
            return None
    finally:
        gc.freeze()
        gc.enable()
    return _run(server, options)


def _load_for_the_session(*, prompt: bool) -> None:
    """Import what the session needs up to its first prompt (while the collector is off)."""
    import asyncio  # noqa: F401

    import duragent.cli.chatting
    import duragent.cli.repl
    import duragent.client.asyncio_client  # noqa: F401

    if prompt:
        import prompt_toolkit  # noqa: F401


def parse_terminal_options(command: str, args: list[str]) -> TerminalOptions | None:
    """`chat`'s or `attach`'s arguments, or None for anything left to the full command (help, --server)."""
    if command not in VALUED_OPTIONS:
        return None
    valued, switches = VALUED_OPTIONS[command], SWITCHES[command]
    values: dict[str, str] = {}
    flags: set[str] = set()
    positional: list[str] = []
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        name, equals, value = arg.partition("=")
        if arg in valued:
            if not rest or valued[arg] in values:
                return None
            values[valued[arg]] = rest.pop(0)
        elif equals and name.startswith("--") and name in valued and valued[name] not in values:
            values[valued[name]] = value
        elif arg in switches:
            flags.add(switches[arg])
        elif arg.startswith("-"):
            return None
        else:
            positional.append(arg)
    if (command == "chat" and positional) or len(positional) > 1:
        return None
    session = values["session"] if "session" in values else (positional[0] if positional else None)
    if session is not None and not session.strip():
        return None  # (an empty name, `--session "$UNSET"`: the full command says which argument)
    if (session is not None and flags) or len(flags) > 1:
        return None  # (options that contradict each other: the full command says which)
    return TerminalOptions(
        command,
        agent=values.get("agent"),
        session=session,
        new="new" in flags,
        list_sessions="list_sessions" in flags,
        last="last" in flags,
    )


def _run(server: RunningServer, options: TerminalOptions) -> int | None:
    import asyncio

    from duragent.cli.chatting import open_attach, open_chat, say_interrupted, talk
    from duragent.cli.repl import TerminalWorkspace
    from duragent.client.asyncio_client import AsyncioApiClient
    from duragent.client.http import ServerUnreachable
    from duragent.errors import DuragentError, error_text

    def load_config() -> DuragentConfig:
        from duragent.config import load_config

        return load_config(server.config_path, gateway_variables_later=True)

    api = AsyncioApiClient(server.url, token=server.token)
    workspace = TerminalWorkspace(server.data_path, load_config)

    async def run() -> int | None:
        attachment: Attachment | None
        try:
            if options.command == "chat":
                attachment = await open_chat(
                    api, workspace, agent=options.agent, session=options.session, new=options.new
                )
            else:
                attachment = await open_attach(
                    api,
                    workspace,
                    session_id=options.session,
                    list_sessions=options.list_sessions,
                    last=options.last,
                )
        except ServerUnreachable:
            return None  # gone since it wrote its run file: the full command starts a new one
        if attachment is not None:
            await talk(api, workspace, attachment, local=False)
        return 0

    try:
        return asyncio.run(run())
    except KeyboardInterrupt:
        say_interrupted()
        return 130
    except DuragentError as exc:
        print(error_text(exc), file=sys.stderr)
        return exc.exit_code
