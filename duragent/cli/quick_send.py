"""The fast path of `duragent send`: to the workspace's running server, or to one it starts.

A warm `send` is one small request and one streamed turn, yet the full command imports typer,
pydantic (the configuration loader) and aiohttp first: 0.4-0.7 s before anything is sent. This
path reads only what it needs with the standard library (duragent.yaml's `data_dir`, the run
file the server wrote, the workspace's tokens) and talks through `AsyncioApiClient`, then runs
the very same send logic (`duragent.cli.sending`). When no server runs (a cold `send`), it starts
one through the launcher, which waits for the server's own word that it is ready, and imports
what sending takes while the server starts.

It answers only when it is sure: the plain options (`--agent`, `--session`, `--new`, `--json`,
`--no-stream`; a message on stdin goes the full way), a configuration it can read without the
full loader, and a server of this workspace that is up to date or not running at all. Anything
else returns None and the normal command runs, which restarts or explains the server as usual;
so does a server that cannot be reached before the message went out. A new server that exits
before it is ready is reported here as the full command reports it (the configuration's error,
else the server's own words from its log), without starting it a second time.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple

#: A top-level `data_dir:` whose value is a plain path (no quotes, variables or flow syntax).
_DATA_DIR = re.compile(r"^data_dir:[ \t]*(?P<value>[^\s'\"#${}\[\]]*)[ \t]*(?:#.*)?$", re.MULTILINE)
_DATA_DIR_KEY = re.compile(r"^data_dir:", re.MULTILINE)
#: An API token may be set in duragent.yaml (block or flow style: `server: {api_token: ...}`).
_API_TOKEN = re.compile(r"^[^#\n]*\bapi_token\b", re.MULTILINE)
_DEFAULT_DATA_DIR = "./.duragent/"
#: `send`'s options this path reads, by every name they go by, to the `send` parameter they set
#: (any other option goes to the full command); a test ties them to the typer command's.
VALUED_OPTIONS = {"--agent": "agent", "-a": "agent", "--session": "session", "-s": "session"}
SWITCHES = {"--new": "new", "--json": "as_json", "--no-stream": "no_stream"}


class SendOptions(NamedTuple):
    """What `duragent send` was asked."""

    message: str
    agent: str | None = None
    session: str | None = None
    new: bool = False
    as_json: bool = False
    no_stream: bool = False


class RunningServer(NamedTuple):
    """This workspace's server, running and up to date, and what a client needs to talk to it."""

    url: str
    token: str
    config_path: Path
    data_path: Path


def quick_send(args: list[str], env: Mapping[str, str] | None = None) -> int | None:
    """Send through the running server and return the exit status; None when the full command must run."""
    env = os.environ if env is None else env
    options = parse_send_options(args)
    if options is None or options.message == "-" or not _plain_text(options.message):
        # (a message on stdin could not be read twice if this path had to hand over after all;
        # the full command says what is wrong with an empty one, or one that is not UTF-8)
        return None
    server = running_server(env) or started_server(env, quiet=options.as_json)
    if server is None:
        return None
    return _send(server.url, server.token, server.data_path, options, options.message)


def _plain_text(message: str) -> bool:
    """Whether `message` holds text, all of it UTF-8 (argv bytes that are not arrive as surrogates)."""
    if not message.strip():
        return False
    try:
        message.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def running_server(env: Mapping[str, str]) -> RunningServer | None:
    """The workspace's running server, found with the standard library; None when only the full
    command can tell (no workspace, a configuration that needs the loader, no server, a stale one)."""
    located = _workspace_paths(env)
    if located is None:
        return None
    config_path, data_path = located
    url = _running_server(config_path, data_path, env)
    if url is None:
        return None
    token = _api_token(data_path, env)
    if token is None:
        return None
    return RunningServer(url, token, config_path, data_path)


def started_server(
    env: Mapping[str, str], *, quiet: bool = False, while_starting: Callable[[], object] | None = None
) -> RunningServer | None:
    """Start the workspace's server when none runs (a cold `send` or `chat`), with the standard
    library; `while_starting` (by default: import what sending takes) runs while it starts.

    None when a server runs (out of date, or of another workspace: the full command decides what
    to do). A new server that exits before it is ready raises what the full command would say:
    the configuration's ConfigError, else ServerExited with the end of the server's log.
    """
    located = _workspace_paths(env)
    if located is None:
        return None
    config_path, data_path = located
    from duragent.client.launcher import ServerExited, Workspace, connect
    from duragent.client.runfile import read_run_info

    if read_run_info(data_path) is not None:
        return None
    workspace = Workspace(data_path, config_path.resolve(), _workspace_hash(data_path))
    try:
        connection = connect(workspace, env=env, while_starting=while_starting or _prepare_to_send)
    except ServerExited:
        if read_run_info(data_path) is not None:
            # Ours lost the data directory to a server started meanwhile (by hand, say): that
            # one serves this workspace, and the full command connects to it.
            return None
        # Handing over would start the server a second time just to fail again: say here what
        # the full command says, from the configuration (its warnings, its ConfigError) or else
        # from this start's log.
        from duragent.cli.context import CliState

        CliState(config_path=config_path).config()
        raise
    for line in connection.notices(quiet=quiet):
        print(line, file=sys.stderr)
    token = _api_token(data_path, env)
    if token is None:
        return None
    return RunningServer(connection.url, token, config_path, data_path)


def _workspace_paths(env: Mapping[str, str]) -> tuple[Path, Path] | None:
    """duragent.yaml and the data directory, when the standard library can tell them."""
    if "DURAGENT_CONFIG" in env:
        return None
    from duragent.discovery import find_config

    config_path = find_config()
    if config_path is None:
        return None
    data_path = data_path_of(config_path)
    if data_path is None:
        return None
    return config_path, data_path


def _workspace_hash(data_path: Path) -> str:
    """What the server's run file and /readyz call this workspace (`DuragentConfig.workspace_hash`)."""
    return hashlib.sha256(str(data_path).encode()).hexdigest()


def parse_send_options(args: list[str]) -> SendOptions | None:
    """`send`'s arguments, or None for anything this path leaves to the full command (help, --server)."""
    values: dict[str, str] = {}
    flags: set[str] = set()
    message: str | None = None
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        name, equals, value = arg.partition("=")
        if arg == "--":
            if message is not None or len(rest) != 1:
                return None
            message = rest.pop(0)
        elif arg in VALUED_OPTIONS:
            if not rest or VALUED_OPTIONS[arg] in values:
                return None
            values[VALUED_OPTIONS[arg]] = rest.pop(0)
        elif equals and name.startswith("--") and name in VALUED_OPTIONS:
            if VALUED_OPTIONS[name] in values:
                return None
            values[VALUED_OPTIONS[name]] = value
        elif arg in SWITCHES:
            flags.add(SWITCHES[arg])
        elif arg.startswith("-") and arg != "-":
            return None
        elif message is None:
            message = arg
        else:
            return None
    if message is None or ("session" in values and "new" in flags):
        return None  # (`--session` with `--new`: the full command says they contradict)
    return SendOptions(
        message,
        agent=values.get("agent"),
        session=values.get("session"),
        new="new" in flags,
        as_json="as_json" in flags,
        no_stream="no_stream" in flags,
    )


def data_path_of(config_path: Path) -> Path | None:
    """The data directory duragent.yaml names, if a plain reading is enough to know it."""
    try:
        text = config_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if _API_TOKEN.search(text):
        return None  # `server.api_token` may be `${VAR}`: the loader resolves it
    declared = _DATA_DIR_KEY.findall(text)
    if not declared:
        value = _DEFAULT_DATA_DIR
    elif len(declared) == 1 and (plain := _DATA_DIR.search(text)) and plain.group("value"):
        value = plain.group("value")
    else:
        return None
    path = Path(value).expanduser()
    return path if path.is_absolute() else (config_path.resolve().parent / path).resolve()


def _running_server(config_path: Path, data_path: Path, env: Mapping[str, str]) -> str | None:
    """The URL of this workspace's server when it runs and is up to date for this shell."""
    from duragent.client.runfile import config_digest, pid_alive, read_run_info

    try:
        info = read_run_info(data_path)
    except Exception:  # a damaged run file: the full command explains it
        return None
    if info is None or not info.url.startswith("http://") or not pid_alive(info.pid):
        return None
    if info.workspace_hash != _workspace_hash(data_path):
        return None
    if info.config_digest and info.config_digest != config_digest(config_path):
        return None
    if info.env is not None and info.env.changed_in(env):
        return None
    return info.url


def _api_token(data_path: Path, env: Mapping[str, str]) -> str | None:
    from duragent.access_tokens import API_TOKEN_ENV, read_tokens
    from duragent.errors import DuragentError

    if env.get(API_TOKEN_ENV):
        return env[API_TOKEN_ENV]
    try:
        stored = read_tokens(data_path)
    except DuragentError:
        return None
    return stored.api if stored is not None and stored.api else None


def _prepare_to_send() -> None:
    """Import what sending takes: while a new server starts, this runs beside its start."""
    import duragent.cli.render
    import duragent.cli.sending
    import duragent.client.asyncio_client
    import duragent.client.state  # noqa: F401


def _send(url: str, token: str, data_path: Path, options: SendOptions, content: str) -> int | None:
    import asyncio

    from duragent.cli.sending import agent_name, pick_session, print_json_failure, send_one
    from duragent.client.asyncio_client import AsyncioApiClient
    from duragent.client.http import ServerUnreachable
    from duragent.client.state import ClientState
    from duragent.errors import DuragentError, error_text

    api = AsyncioApiClient(url, token=token)

    async def run() -> int:
        client = ClientState.load(data_path)
        name = await agent_name(api, options.agent, options.session)
        info, _resumed = await pick_session(api, client, name, options.session, options.new)
        return await send_one(
            api, client, info, content, as_json=options.as_json, stream=not options.no_stream
        )

    try:
        return asyncio.run(run())
    except KeyboardInterrupt:
        return 130  # `send_one` said what became of the turn
    except ServerUnreachable as exc:
        if not api.message_sent:
            return None  # gone since it wrote its run file: the full command starts a new one
        if options.as_json:
            print_json_failure(exc)
        print(error_text(exc), file=sys.stderr)
        return exc.exit_code
    except DuragentError as exc:
        if options.as_json:
            print_json_failure(exc)
        print(error_text(exc), file=sys.stderr)
        return exc.exit_code
