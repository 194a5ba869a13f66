"""An API key pasted into `spec.model.api_key_env` (which names a variable) is refused where the
agent loads, at its file:line, with what to do; no command prints the key."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

DURAGENT = Path(sys.executable).with_name("duragent")
KEY = "sk-proj-abcdEFGH1234567890DO-NOT-PRINT"
SAID = (
    "spec.model.api_key_env: must name an environment variable (letters, digits and _), not hold "
    "the key itself (sk-p…): put the key in the environment, name its variable here, and revoke "
    "the key if this file was committed"
)


def duragent(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(DURAGENT), *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def workspace_with_pasted_key(tmp_path: Path) -> Path:
    assert duragent(tmp_path, "init", "--yes", "--provider", "openai").returncode == 0
    agent_yaml = tmp_path / ".duragent" / "agents" / "assistant" / "agent.yaml"
    text = agent_yaml.read_text()
    assert "api_key_env: OPENAI_API_KEY" in text
    agent_yaml.write_text(text.replace("api_key_env: OPENAI_API_KEY", f"api_key_env: {KEY}"))
    return agent_yaml


def test_validate_and_show_name_the_line_and_never_print_the_key(tmp_path: Path) -> None:
    agent_yaml = workspace_with_pasted_key(tmp_path)
    line = next(n for n, text in enumerate(agent_yaml.read_text().splitlines(), 1) if KEY in text)

    validated = duragent(tmp_path, "agent", "validate", "assistant")
    shown = duragent(tmp_path, "agent", "show", "assistant")
    as_json = duragent(tmp_path, "agent", "show", "assistant", "--json")

    for result in (validated, shown, as_json):
        assert result.returncode != 0
        assert KEY not in result.stdout + result.stderr
    assert f"agent.yaml:{line}:" in validated.stdout + validated.stderr
    assert SAID in shown.stderr


def test_doctor_fails_the_agent_with_what_to_do_without_printing_the_key(tmp_path: Path) -> None:
    workspace_with_pasted_key(tmp_path)

    result = duragent(tmp_path, "doctor", "--json")

    assert KEY not in result.stdout + result.stderr
    failed = [c for c in json.loads(result.stdout)["checks"] if c["status"] == "fail"]
    assert any(SAID in c["message"] for c in failed), failed
    assert result.returncode == 1
