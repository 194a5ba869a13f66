"""`duragent schema agent|config`: print the JSON Schema editors use for completion.

Also the generator of the shipped schema files: `python -m duragent.cli.schema --write`
rewrites `duragent/schemas/*.schema.json` from the models; `--write DIR...` writes into those
folders instead (the example workspace keeps a copy in `examples/.duragent/schemas/`).
"""

from __future__ import annotations

import enum
import sys
from pathlib import Path
from typing import Annotated

import typer


class SchemaKind(enum.StrEnum):
    """Which file's schema to print."""

    agent = "agent"
    config = "config"


def schema_command(
    kind: Annotated[SchemaKind, typer.Argument(help="agent (agent.yaml) or config (duragent.yaml).")],
) -> None:
    """Print the JSON Schema of agent.yaml or duragent.yaml."""
    from duragent.schemas import shipped_schema_text

    sys.stdout.write(shipped_schema_text(kind.value))


def register(app: typer.Typer) -> None:
    """Add the `schema` command to the app."""
    app.command("schema")(schema_command)


def generate(directories: list[Path]) -> list[Path]:
    """Write the schemas generated from the models into `directories` (default: the package's)."""
    from duragent.schemas import SCHEMAS_DIR, write_schemas

    written: list[Path] = []
    for directory in directories or [SCHEMAS_DIR]:
        written += write_schemas(directory)
    return written


def _generator_main(argv: list[str]) -> int:
    if not argv or argv[0] != "--write":
        print("usage: python -m duragent.cli.schema --write [DIR...]", file=sys.stderr)
        return 2
    for path in generate([Path(arg) for arg in argv[1:]]):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(_generator_main(sys.argv[1:]))
