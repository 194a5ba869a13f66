"""A `serve` start imports what serving turns takes, not what a page, an export or `init` takes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from duragent.scaffold import ProviderChoice, init_workspace

PROBE = """
import asyncio, sys
from pathlib import Path
from aiohttp import web
from duragent.config import load_config
from duragent.server.app import create_app

async def main():
    runner = web.AppRunner(create_app(load_config(Path(sys.argv[1])), host="127.0.0.1"))
    await runner.setup()  # every resource open: what /readyz answers for
    try:
        print(" ".join(sorted(sys.modules)))
    finally:
        await runner.cleanup()

asyncio.run(main())
"""

#: Imported by the pages, exports and commands that use them.
NOT_AT_START = (
    "duragent.scaffold",  # `duragent init` and agent copies
    "duragent.vcs.history",  # the dashboard's timeline
    "duragent.vcs.revisions",  # the dashboard's revision pages
    "tarfile",  # a memory export
    "difflib",  # unknown keys in a YAML file, a person's edit merged into memory
    # route modules, imported on their routes' first request (duragent.server.lazy_routes)
    "duragent.server.routes.sessions",
    "duragent.server.routes.agents",
    "duragent.server.routes.artifacts",
    "duragent.server.routes.schedules",
    "duragent.server.routes.admin",
    "duragent.server.routes.processes",
    "duragent.server.openai.routes",
    "duragent.web.sessions",
    "duragent.web.memory",
    "duragent.web.history",
    "duragent.web.agents",
    "duragent.web.processes",
    "duragent.server.bodies",  # the API's request and reply models (the health routes: server.replies)
    # what a turn takes, imported by duragent.runtime.loop when the first turn needs it
    "duragent.runtime.context",
    "duragent.runtime.memory_context",
    "duragent.runtime.guarded_files",
    "duragent.runtime.policy",  # (and at start by an agent with a policy.yaml to check)
    "duragent.skills.discovery",
    "duragent.skills.active",
    "duragent.skills.index",
    "duragent.tools.skill",
    "duragent.tools.registry",
    "duragent.tools.folders",
    "duragent.tools.files",
    "duragent.tools.protected",
    "duragent.tools.web_search",
)


def test_a_started_server_has_not_imported_what_only_routes_pages_and_exports_use(tmp_path: Path) -> None:
    init_workspace(tmp_path, provider=ProviderChoice("openai", "gpt-test", "test"), git=True)
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path / "duragent.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OPENAI_API_KEY": "sk-test"},
    )
    assert done.returncode == 0, done.stderr
    loaded = set(done.stdout.split())
    assert "duragent.server.app" in loaded
    assert loaded & set(NOT_AT_START) == set()
