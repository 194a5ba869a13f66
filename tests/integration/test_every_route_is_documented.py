"""Every route the server answers (its OpenAPI document) is named in docs/api.md or docs/admin.md,
with its method, so a client developer reading the docs finds each one."""

from __future__ import annotations

import re
from pathlib import Path

from duragent.config import load_config
from duragent.server.app import create_app
from duragent.server.openapi import build_document
from tests.e2e.server_harness import write_workspace

DOCS = Path(__file__).parents[2] / "docs"
#: `{session_id}` in the route table is `{id}` in the docs: any name in braces is one parameter.
_PARAMETER = re.compile(r"\{[^}]*\}")


def _documented_lines() -> list[str]:
    text = "\n".join((DOCS / page).read_text() for page in ("api.md", "admin.md"))
    return _PARAMETER.sub("{}", text).splitlines()


def _names(line: str, method: str, path: str) -> bool:
    """`line` names `path` (not a longer path it starts) and says `method` before it."""
    for found in re.finditer(re.escape(path) + r"(?![\w/{-])", line):
        if re.search(rf"\b{method}\b", line[: found.start()]):
            return True
    return False


def test_every_api_and_admin_route_is_in_the_docs_with_its_method(tmp_path: Path) -> None:
    config = load_config(write_workspace(tmp_path, "http://127.0.0.1:9/v1", git=False))
    document = build_document(create_app(config, env={}))
    lines = _documented_lines()
    missing = []
    for route, operations in document["paths"].items():
        if route == "/v1" or route.startswith("/v1/"):
            continue  # the OpenAI-compatible API has its own page, docs/openai.md
        path = _PARAMETER.sub("{}", route)
        for method in operations:
            if not any(_names(line, method.upper(), path) for line in lines):
                missing.append(f"{method.upper()} {route}")
    assert missing == []
