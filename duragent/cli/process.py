"""`duragent process list|show|kill`: agents' background processes, from the running server.

The server follows each process (its pid, its output, its end), so these commands ask its admin
API, as `gateway list` does. A handle may be shortened to any unique start (`proc_01JD`), as
session ids may.
"""

from __future__ import annotations

import json
import urllib.parse
from datetime import datetime
from typing import Annotated, Any

import typer

from duragent.cli.context import CliState, check_agent_exists, print_json, print_table

app = typer.Typer(help="Background processes the agents started: list, show, kill.", no_args_is_help=True)

#: Output `show` prints by default: the end of the log, about a screenful.
DEFAULT_OUTPUT_BYTES = 4096


def register(root: typer.Typer) -> None:
    """Add the `process` command group."""
    root.add_typer(app, name="process")


class _Server:
    """The running server's admin API, for the data directory of the command's configuration."""

    def __init__(self, ctx: typer.Context):
        from duragent.cli.serve import read_run_file
        from duragent.client.http import admin_token
        from duragent.errors import DuragentError

        state: CliState = ctx.ensure_object(CliState)
        config = state.config()
        record = read_run_file(config)
        if record is None:
            raise DuragentError(
                f"no server is running for {config.data_path} (background processes run under "
                "`duragent serve`; start it to see them)"
            )
        self.url = f"{record['url']}/api/admin/v1/processes"
        self.token = admin_token(config)

    def request(self, path: str = "", *, method: str = "GET", query: dict[str, Any] | None = None) -> Any:
        """The answer's JSON; DuragentError with the server's own words when it refuses."""
        from duragent.cli.serve import request_server
        from duragent.errors import DuragentError, NotFound, UsageError

        url = self.url + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        try:
            status, text = request_server(url, self.token, method=method, timeout=30.0)
        except OSError as exc:
            raise DuragentError(f"cannot reach the server at {self.url}: {exc}") from exc
        if status == 200:
            try:
                return json.loads(text)
            except ValueError as exc:
                raise DuragentError(f"the server answered {url} with something not JSON: {exc}") from exc
        detail = _problem_detail(text)
        if status == 404:
            raise NotFound(detail)
        if status == 400:
            raise UsageError(detail)
        raise DuragentError(f"the server answered HTTP {status}: {detail}")

    def processes(self, agent: str | None = None, *, running: bool = False) -> list[dict[str, Any]]:
        """The records, oldest first."""
        body = self.request(query={"agent": agent, "running": "true" if running else None})
        return [entry["process"] for entry in body.get("processes", [])]

    def resolve(self, handle: str) -> str:
        """The whole handle `handle` starts (itself when none or several do: the server then
        says it has no such process, or the error lists the candidates)."""
        from duragent.errors import UsageError

        matches = [p["handle"] for p in self.processes() if p["handle"].startswith(handle)]
        if handle in matches or not matches:
            return handle
        if len(matches) > 1:
            raise UsageError(f"{handle!r} starts {len(matches)} handles: {', '.join(matches)}")
        return str(matches[0])


def _problem_detail(text: str) -> str:
    """The `detail` of a problem+json answer, or its text."""
    try:
        body = json.loads(text)
    except ValueError:
        return text.strip()
    if isinstance(body, dict) and body.get("detail"):
        return str(body["detail"])
    return text.strip()


def _local(value: str | None) -> str:
    """An RFC 3339 time as the reader's local time, its zone named."""
    if not value:
        return "-"
    return datetime.fromisoformat(value).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def _outcome(process: dict[str, Any]) -> str:
    """`running`, `exited with code 0`, `killed: killed by an operator`, ..."""
    from duragent.processes.record import ProcessRecord

    return ProcessRecord.model_validate(process).outcome()


@app.command("list")
def list_processes(
    ctx: typer.Context,
    agent: Annotated[str | None, typer.Option("--agent", "-a", help="Only this agent's processes.")] = None,
    show_all: Annotated[
        bool, typer.Option("--all", help="Also the ended ones (the newest 200 are kept).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Running background processes, oldest first (--all: ended ones too)."""
    server = _Server(ctx)
    every = server.processes(agent)
    if agent is not None and not every:
        check_agent_exists(ctx.ensure_object(CliState), agent, "processes")
    processes = every if show_all else [p for p in every if p.get("status") == "running"]
    if as_json:
        print_json(processes)
        return
    if not processes:
        ended = len(every)
        print(
            f"No running processes ({ended} ended: --all lists them)."
            if ended
            else "No background processes."
        )
        return
    rows = [
        [
            p["handle"],
            p["agent"],
            _outcome(p),
            _local(p.get("started_at")),
            p.get("label") or p["command"],
        ]
        for p in processes
    ]
    print_table(["HANDLE", "AGENT", "STATUS", "STARTED", "LABEL OR COMMAND"], rows)


@app.command("show")
def show_process(
    ctx: typer.Context,
    handle: Annotated[str, typer.Argument(help="The process's handle, or a unique start of it.")],
    output_bytes: Annotated[
        int, typer.Option("--bytes", min=1, max=1024 * 1024, help="How much of the output's end to print.")
    ] = DEFAULT_OUTPUT_BYTES,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """One process: its command, session, state, and the end of its output."""
    server = _Server(ctx)
    whole = server.resolve(handle)
    body = server.request(f"/{urllib.parse.quote(whole, safe='')}", query={"limit": output_bytes})
    if as_json:
        print_json(body)
        return
    process, output = body["process"], body.get("output") or {}
    fields = [
        ("handle", process["handle"]),
        ("agent", process["agent"]),
        ("session", process["session_id"]),
        ("command", process["command"]),
        ("workdir", process.get("workdir", ".")),
        ("label", process.get("label") or "-"),
        ("status", _outcome(process)),
        ("pid", str(process.get("pid") or "-")),
        ("started", _local(process.get("started_at"))),
        ("ended", _local(process.get("ended_at"))),
    ]
    from duragent.terminal_text import printable

    for name, value in fields:
        print(f"{name:<9} {printable(value)}")
    text = output.get("text", "")
    total = int(output.get("total", 0))
    # (the server's byte range, not the text's length: bytes that are not UTF-8 read as U+FFFD)
    got = int(output.get("end", total)) - int(output.get("offset", 0))
    shown = f"the last {got} of {total} bytes" if got < total else "all of it"
    print(f"\noutput ({shown}):" if total else "\nno output yet")
    if text:
        shown_text = printable(text)
        print(shown_text, end="" if shown_text.endswith("\n") else "\n")


@app.command("kill")
def kill_process(
    ctx: typer.Context,
    handle: Annotated[str, typer.Argument(help="The process's handle, or a unique start of it.")],
) -> None:
    """Stop a running process (SIGTERM to its group, SIGKILL after a grace period); its session
    is told that an operator killed it."""
    server = _Server(ctx)
    whole = server.resolve(handle)
    body = server.request(f"/{urllib.parse.quote(whole, safe='')}/kill", method="POST")
    from duragent.terminal_text import printable

    process = body["process"]
    # (the label and command are the agent's: shown with their control characters as escapes)
    print(
        printable(f"{process['handle']} ({process.get('label') or process['command']}): {_outcome(process)}")
    )
