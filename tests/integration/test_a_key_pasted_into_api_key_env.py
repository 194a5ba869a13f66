"""An API key pasted into `spec.model.api_key_env` (which names a variable) is called out by
`duragent doctor` with what to do, and neither `doctor` nor `agent show` prints the key."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

DURAGENT = Path(sys.executable).with_name("duragent")
KEY = "sk-proj-abcdEFGH1234567890DO-NOT-PRINT"


def duragent(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(DURAGENT), *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def workspace_with_pasted_key(tmp_path: Path) -> Path:
    assert duragent(tmp_path, "init", "--yes", "--provider", "openai").returncode == 0
    agent_yaml = tmp_path / ".duragent" / "agents" / "assistant" / "agent.yaml"
    text = agent_yaml.read_text()
    assert "api_key_env: OPENAI_API_KEY" in text
    agent_yaml.write_text(text.replace("api_key_env: OPENAI_API_KEY", f"api_key_env: {KEY}"))
    return agent_yaml


def test_doctor_says_the_key_itself_is_in_api_key_env_without_printing_it(tmp_path: Path) -> None:
    agent_yaml = workspace_with_pasted_key(tmp_path)

    result = duragent(tmp_path, "doctor", "--json")

    assert KEY not in result.stdout + result.stderr
    check = next(c for c in json.loads(result.stdout)["checks"] if c["name"] == "agent assistant key")
    assert check["status"] == "fail"
    assert check["message"] == (
        f"{agent_yaml}: spec.model.api_key_env must name an environment variable, "
        "but holds what looks like the key itself (sk-p…)"
    )
    assert check["hint"] == (
        "move the key to the environment (export OPENAI_API_KEY=...), write api_key_env: OPENAI_API_KEY, "
        "and revoke the key: agent.yaml is committed to the data repository's history"
    )
    assert result.returncode == 1


def test_agent_show_does_not_print_a_key_pasted_into_api_key_env(tmp_path: Path) -> None:
    workspace_with_pasted_key(tmp_path)

    text = duragent(tmp_path, "agent", "show", "assistant")
    as_json = duragent(tmp_path, "agent", "show", "assistant", "--json")

    assert text.returncode == 0, text.stderr
    assert as_json.returncode == 0, as_json.stderr
    assert KEY not in text.stdout + text.stderr + as_json.stdout + as_json.stderr
    assert "api_key_env is not a variable name (sk-p…): see duragent doctor" in text.stdout
    assert json.loads(as_json.stdout)["definition"]["spec"]["model"]["api_key_env"] == "sk-p…"
