"""`gateways.http.enabled` and `gateways.cli.enabled` are accepted (the seed's deployment files set
them) but turn nothing off: the server always serves its HTTP API, which the terminal commands
and the dashboard use. Set to false, every command says so instead of leaving the user to believe
the API is closed (docs/configuration.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from duragent.scaffold import init_workspace

DURAGENT = Path(sys.executable).parent / "duragent"


def duragent(workspace: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DURAGENT), *args], cwd=workspace, capture_output=True, text=True, timeout=60, check=False
    )


def workspace_with(tmp_path: Path, gateways: str) -> Path:
    workspace = tmp_path / "ws"
    init_workspace(workspace)
    config = workspace / "duragent.yaml"
    config.write_text(config.read_text(encoding="utf-8") + gateways, encoding="utf-8")
    return workspace


def test_turning_the_http_or_terminal_gateway_off_is_reported_where_it_is_set(tmp_path: Path) -> None:
    workspace = workspace_with(tmp_path, "gateways:\n  http:\n    enabled: false\n  cli: {enabled: false}\n")
    lines = (workspace / "duragent.yaml").read_text(encoding="utf-8").splitlines()
    http_line = lines.index("    enabled: false") + 1
    cli_line = lines.index("  cli: {enabled: false}") + 1

    listed = duragent(workspace, "agent", "list")

    assert listed.returncode == 0, listed.stderr
    assert "assistant" in listed.stdout
    assert (
        f"warning: duragent.yaml:{http_line}:14: gateways.http.enabled: false has no effect" in listed.stderr
    ), listed.stderr
    assert f"warning: duragent.yaml:{cli_line}:18: gateways.cli.enabled: false has no effect" in listed.stderr

    doctor = duragent(workspace, "doctor", "--json")
    config_check = next(c for c in json.loads(doctor.stdout)["checks"] if c["name"] == "config")
    assert config_check["status"] == "warn"
    assert "gateways.http.enabled: false has no effect" in config_check["message"]


def test_the_gateways_left_on_say_nothing(tmp_path: Path) -> None:
    gateways = "gateways:\n  http: {enabled: true, port: 8080}\n  cli: {enabled: true}\n"
    workspace = workspace_with(tmp_path, gateways)

    listed = duragent(workspace, "agent", "list")

    assert listed.returncode == 0, listed.stderr
    assert "warning" not in listed.stderr
