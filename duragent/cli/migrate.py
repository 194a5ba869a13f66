"""`duragent migrate`: copy sessions and memory to the other backend, then tell the user what to flip."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from duragent.cli.context import CliState, print_json, run_async

if TYPE_CHECKING:
    from duragent.migrate import MemoryFileResult, MigrationReport, SessionResult


class TargetBackend(StrEnum):
    """Where `--to` sends the state."""

    postgres = "postgres"
    filesystem = "filesystem"


def register(app: typer.Typer) -> None:
    """Add the `migrate` command."""
    app.command("migrate")(migrate)


def migrate(
    ctx: typer.Context,
    to: Annotated[TargetBackend, typer.Option("--to", help="The backend to copy state to.")],
    sessions: Annotated[bool, typer.Option("--sessions", help="Migrate sessions (default: both).")] = False,
    memory: Annotated[bool, typer.Option("--memory", help="Migrate memory (default: both).")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be copied; write nothing.")
    ] = False,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            help="PostgreSQL target (default: services.*.url, then $DATABASE_URL).",
            show_default=False,
        ),
    ] = None,
    path: Annotated[
        Path | None,
        typer.Option(
            "--path",
            help="Filesystem target: a data directory receiving sessions/ and memory/ "
            "(default: the configured folders).",
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace target sessions whose log conflicts with the source.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Copy sessions and memory between filesystem and PostgreSQL; rerun to resume or catch up."""
    from duragent.migrate import MigrationIncomplete, MigrationRequest
    from duragent.migrate import migrate as run_migration

    state: CliState = ctx.obj
    request = MigrationRequest(
        to="postgres" if to is TargetBackend.postgres else "filesystem",
        sessions=sessions,
        memory=memory,
        dry_run=dry_run,
        url=url,
        path=path,
        overwrite=overwrite,
    )
    progress = None if as_json or state.verbosity < 1 else _print_progress
    report: MigrationReport = run_async(run_migration(state.config(), request, on_progress=progress))
    if as_json:
        print_json(_report_json(report))
    else:
        _print_report(report)
    if not report.complete:
        raise MigrationIncomplete(
            f"{len(report.problems)} problem(s): the target is not a complete copy yet (see above)"
        )


def _print_progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _print_report(report: MigrationReport) -> None:
    from duragent.migrate import not_migrated

    would = "would copy" if report.dry_run else "copied"
    for move in report.moves:
        print(f"{move.service}: {move.source.describe()} -> {move.target.describe()}")
    if any(move.service == "session" for move in report.moves):
        print(f"\nSessions ({len(report.sessions)}):")
        width = max((len(result.session_id) for result in report.sessions), default=0)
        for result in report.sessions:
            print(f"  {result.session_id:<{width}}  {_session_line(result, would)}")
    if any(move.service == "memory" for move in report.moves):
        print(f"\nMemory files ({len(report.memory)}):")
        width = max((len(entry.path) for entry in report.memory), default=0)
        for entry in report.memory:
            print(f"  {entry.path:<{width}}  {_memory_line(entry, report.dry_run)}")
    print()
    _print_totals(report, would)
    print("Not migrated:")
    for item in not_migrated(report.moves):
        print(f"  - {item}")
    if report.dry_run:
        print("\nDry run: nothing was written.")
    elif report.problems:
        print("\nProblems:")
        for problem in report.problems:
            print(f"  {problem}")
    else:
        _print_next_step(report)


def _print_totals(report: MigrationReport, would: str) -> None:
    copied_sessions = sum(1 for r in report.sessions if r.events_copied or r.snapshot_copied)
    files = sum(1 for m in report.memory if m.action in ("copy", "update"))
    events = report.events_copied
    print(
        f"{would.capitalize()}: {_count(events, 'event')} in {_count(copied_sessions, 'session')}, "
        f"{_count(files, 'memory file')}."
    )
    if not report.dry_run:
        verified_sessions = [r for r in report.sessions if r.events_verified is not None and not r.problem]
        verified_events = sum(r.events_verified or 0 for r in verified_sessions)
        verified_files = sum(1 for m in report.memory if m.verified)
        print(
            f"Verified: {_count(len(verified_sessions), 'session')} ({_count(verified_events, 'event')}, "
            f"sha256 per session), {_count(verified_files, 'memory file')} (sha256 each)."
        )


def _count(number: int, noun: str) -> str:
    """`1 session`, `2 sessions`."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _print_next_step(report: MigrationReport) -> None:
    from duragent.migrate import services_yaml

    print("\nDone. Stop the server, put this in duragent.yaml, and start it again:\n")
    print(services_yaml(report.moves), end="")
    urls = {move.target.url_without_password() for move in report.moves if move.target.backend == "postgres"}
    for shown in sorted(url for url in urls if url):
        print(f"# and DATABASE_URL={shown} in the environment (with its password)")


def _memory_line(entry: MemoryFileResult, dry_run: bool) -> str:
    if entry.action == "skipped":
        return entry.problem or "skipped"
    line = {
        "copy": "would copy" if dry_run else "copied",
        "update": "would update" if dry_run else "updated",
    }.get(entry.action, entry.action)
    return f"{line}; {entry.problem}" if entry.problem else line


def _session_line(result: SessionResult, would: str) -> str:
    if result.action == "conflict":
        return f"CONFLICT: {result.problem}"
    if result.action == "up_to_date":
        return f"up to date ({result.source_last_seq} events)"
    parts = []
    if result.events_copied:
        first = result.source_last_seq - result.events_copied + 1
        parts.append(f"{result.events_copied} events (seq {first}-{result.source_last_seq})")
    if result.snapshot_copied:
        parts.append("snapshot")
    verb = f"replaced, {would}" if result.action == "replace" else would
    line = f"{verb} {' + '.join(parts)}" if parts else "nothing to copy"
    return f"{line}; {result.problem}" if result.problem else line


def _report_json(report: MigrationReport) -> dict[str, Any]:
    from dataclasses import asdict

    from duragent.migrate import not_migrated, services_yaml

    return {
        "dry_run": report.dry_run,
        "complete": report.complete,
        "moves": [
            {
                "service": move.service,
                "source": move.source.describe(),
                "target": move.target.describe(),
                "set": dict(move.target_settings),
            }
            for move in report.moves
        ],
        "sessions": [asdict(result) for result in report.sessions],
        "memory": [asdict(result) for result in report.memory],
        "events_copied": report.events_copied,
        "problems": report.problems,
        "not_migrated": not_migrated(report.moves),
        "services_yaml": services_yaml(report.moves),
    }
