"""`duragent db upgrade` and `duragent db status`: the PostgreSQL schema of the configured services."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from duragent.cli.context import CliState, print_json, run_async

if TYPE_CHECKING:
    from duragent.config import DuragentConfig

T = TypeVar("T")

db_app = typer.Typer(
    name="db", help="PostgreSQL schema of the services that use it: status and upgrade.", no_args_is_help=True
)


def register(root: typer.Typer) -> None:
    """Add the `db` command group."""
    root.add_typer(db_app)


@db_app.command("status")
def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Applied and available schema versions of each PostgreSQL database in services.*."""
    from duragent.stores.postgres.migrations import configured_databases, database_status

    state: CliState = ctx.obj
    config = state.config()
    databases = configured_databases(config)
    reports = [
        _status_json(
            target.describe(), target.schema, services, _on(config, services, database_status(target))
        )
        for target, services in databases.items()
    ]
    newer = any(report["newer"] for report in reports)
    if as_json:
        print_json(reports)
    elif not reports:
        print("No service uses PostgreSQL (services.session/memory.backend: postgres).")
    for report in [] if as_json else reports:
        print(
            f"{', '.join(report['services'])}: {report['database']}  "
            f"version {report['current']} of {report['latest']}  ({_state_text(report)})"
        )
    if newer:
        # This Duragent cannot safely use a schema a newer one migrated: scripts must notice.
        raise typer.Exit(1)


def _state_text(report: dict[str, Any]) -> str:
    if report["newer"]:
        versions = ", ".join(f"{version:04d}" for version in report["newer"])
        return (
            f"newer than this Duragent: migration(s) {versions} come from a newer version;"
            " upgrade Duragent before using this database"
        )
    pending = report["pending"]
    return "up to date" if not pending else f"{len(pending)} pending: run `duragent db upgrade`"


@db_app.command("upgrade")
def upgrade(ctx: typer.Context) -> None:
    """Create the schema and apply pending migrations (safe while workers run or start)."""
    from duragent.stores.postgres.migrations import configured_databases, upgrade_database

    state: CliState = ctx.obj
    config = state.config()
    databases = configured_databases(config)
    if not databases:
        print("No service uses PostgreSQL (services.session/memory.backend: postgres); nothing to do.")
        return
    for target, services in databases.items():
        applied = _on(config, services, upgrade_database(target))
        done = (
            f"applied {', '.join(f'{version:04d}' for version in applied)}"
            if applied
            else "already up to date"
        )
        print(f"{', '.join(services)}: {target.describe()}  {done}")


def _on(config: DuragentConfig, services: list[str], work: Coroutine[Any, Any, T]) -> T:
    """Run `work` on the database of `services`; one it cannot reach or use names their url and its line."""
    from duragent.stores.postgres.migrations import MigrationError
    from duragent.stores.postgres.pool import PostgresUnavailable

    try:
        result: T = run_async(work)
    except (PostgresUnavailable, MigrationError) as error:
        where = config.locate(("services", services[0], "url"))
        keys = ", ".join(f"services.{service}.url" for service in services)
        raise type(error)(f"{where}: {keys}: {error}") from error
    return result


def _status_json(database: str, schema: str, services: list[str], status: Any) -> dict[str, Any]:
    return {
        "services": services,
        "database": database,
        "schema": schema,
        "current": status.current,
        "latest": status.latest,
        "applied": [
            {"version": version, "applied_at": applied_at.isoformat()}
            for version, applied_at in sorted(status.applied.items())
        ],
        "pending": [f"{migration.version:04d}_{migration.name}" for migration in status.pending],
        "newer": status.unknown,
    }
