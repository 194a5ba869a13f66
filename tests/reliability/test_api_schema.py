"""schemathesis against a real `duragent serve`: every route of /openapi.json, bounded examples.

0 server errors and 0 mismatches between the document and what the server answers (status codes,
content types, response bodies). A real session exists, and its id is the `session_id` of every
session route, so those routes are exercised past their 404.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from duragent.testing.fake_llm import FakeLLMServer
from tests.e2e.server_harness import start_serve, write_workspace

pytest_plugins = ["duragent.testing.pytest_plugin"]

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
#: Streams, shutdown and deletes would end the run (or the session it needs) early.
EXCLUDED = r"/(stream|events|shutdown)$"


def create_session(url: str, headers: dict[str, str]) -> str:
    request = urllib.request.Request(
        f"{url}/api/v1/sessions",
        data=json.dumps({"agent": "helper"}).encode(),
        headers={**headers, "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return str(json.load(response)["session_id"])


@pytest.mark.slow
def test_schemathesis_finds_no_server_error_and_no_schema_mismatch(
    tmp_path: Path, fake_llm: FakeLLMServer
) -> None:
    st = shutil.which("st") or str(Path(sys.executable).with_name("st"))
    config = write_workspace(tmp_path, fake_llm.url, git=False)
    server = start_serve(config, tmp_path / "serve.log")
    try:
        session_id = create_session(server.url, server.headers)
        settings = tmp_path / "schemathesis.toml"
        # real names for path parameters: past the 404, into each route's own logic
        settings.write_text(f'[parameters]\nsession_id = "{session_id}"\nmodel = "helper"\n')
        result = subprocess.run(
            [
                st,
                "--config-file",
                str(settings),
                "run",
                f"{server.url}/openapi.json",
                "--checks",
                CHECKS,
                "--max-examples",
                "10",
                "--phases",
                "examples,coverage,fuzzing",
                "--exclude-path-regex",
                EXCLUDED,
                "--exclude-method",
                "DELETE",
                "--request-timeout",
                "10",
                "--workers",
                "1",
                *(f"--header={name}: {value}" for name, value in server.headers.items()),
                "--seed",
                "16",
            ],
            capture_output=True,
            text=True,
            timeout=900,
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stdout[-6000:] + server.log()[-2000:]
        print(result.stdout[result.stdout.find("= SUMMARY =") :])  # the figures, with -s
    finally:
        server.terminate()
