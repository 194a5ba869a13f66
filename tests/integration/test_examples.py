"""examples/ is a complete workspace a person can copy: `duragent agent validate` passes on it as is."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_the_example_workspace_validates_with_two_agents_memory_and_a_policy() -> None:
    data = EXAMPLES / ".duragent"
    assert sorted(p.name for p in (data / "agents").iterdir()) == ["assistant", "code-supervisor"]
    assert (data / "agents" / "code-supervisor" / "policy.yaml").is_file()
    assert any((data / "memory" / "assistant").glob("20*.md"))
    done = subprocess.run(
        [sys.executable, "-m", "duragent", "agent", "validate"],
        cwd=EXAMPLES,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "ok: 2 agents valid"


def test_validate_reports_a_broken_policy_with_its_location(tmp_path: Path) -> None:
    agent = tmp_path / ".duragent" / "agents" / "careful"
    agent.mkdir(parents=True)
    (tmp_path / "duragent.yaml").write_text("data_dir: ./.duragent\n")
    (agent / "agent.yaml").write_text(
        "apiVersion: duragent/v1alpha1\nkind: Agent\nmetadata:\n  name: careful\n"
        "spec:\n  model:\n    provider: demo\n    name: demo\n"
    )
    (agent / "policy.yaml").write_text("mode: ask\nallow: []\n\nmode_typo: x\ndeny: 3\n")
    done = subprocess.run(
        [sys.executable, "-m", "duragent", "agent", "validate"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "policy.yaml:5:7: deny" in done.stdout
