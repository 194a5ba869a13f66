"""`duragent doctor`: report what would stop the agents from running, with a fix for each."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from duragent.doctor import Check


def register(app: typer.Typer) -> None:
    """Add the `doctor` command to `app`."""
    app.command("doctor")(doctor)


def doctor(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the checks as JSON.")] = False,
) -> None:
    """Check Python, configuration, data dir, git, agents, keys, endpoints, databases and plugins."""
    from duragent.cli.context import CliState, print_json
    from duragent.discovery import NotAWorkspace
    from duragent.doctor import run_doctor

    state = ctx.obj if isinstance(ctx.obj, CliState) else CliState()
    try:
        config_path = state.workspace_config()  # from a subfolder too, like every command
    except NotAWorkspace:
        config_path = None  # (the checks below say what is missing, and how to make it)
    report = run_doctor(config_path, data_dir=state.data_dir)
    if as_json:
        print_json(report.to_dict())
    else:
        for check in report.checks:
            print(format_check(check))
    if report.status == "fail":
        raise typer.Exit(1)


_LABELS = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}


def format_check(check: Check) -> str:
    """`ok    name: message`, continuation lines indented, then `      hint: ...` when there is one."""
    indent = " " * 6
    message = check.message.replace("\n", "\n" + indent + "  ")
    line = f"{_LABELS[check.status]}  {check.name}: {message}"
    if check.hint and check.status != "ok":
        line += f"\n{indent}hint: {check.hint}"
    return line
