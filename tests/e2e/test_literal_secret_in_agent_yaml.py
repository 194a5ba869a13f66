"""A key pasted as a literal into an agent's YAML never reaches git, whatever its shape.

`api_key: "mysecretvalue-..."` matches no known key shape and no environment value, so the secret
guard alone let the edit watcher commit it. A value under a key that names a secret (`api_key`,
`token`, `password`, `secret`...) written out rather than as `${VARIABLE}` is refused instead:
the file stays as the person saved it, the log says why, `duragent doctor` names its file:line.
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

import pytest

from duragent.doctor import diagnose
from tests.e2e.server_harness import ApiFactory
from tests.waiting import until

VALUE = "mysecretvalue-Qx7pLm2Vn9"


def committed(data: Path, path: str) -> str:
    done = subprocess.run(["git", "show", f"HEAD:{path}"], cwd=data, capture_output=True, text=True)
    return done.stdout


def subjects(data: Path, path: str) -> list[str]:
    done = subprocess.run(["git", "log", "--format=%s", "--", path], cwd=data, capture_output=True, text=True)
    return done.stdout.splitlines()


async def test_an_agent_yaml_edit_with_a_literal_key_is_not_committed_and_doctor_names_its_line(
    start_api: ApiFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await start_api(git=True)
    data = tmp_path / "ws0" / "data"
    agent_yaml = data / "agents" / "helper" / "agent.yaml"
    original = agent_yaml.read_text()
    # a person's edit the watcher commits, as a control
    agent_yaml.write_text(original.replace("A test agent", "A test agent, edited"))
    await until(lambda: "A test agent, edited" in committed(data, "agents/helper/agent.yaml"), within=30)
    commits = len(subjects(data, "agents/helper/agent.yaml"))

    pasted = original.replace("    api_key_env: FAKE_LLM_KEY\n", f'    api_key: "{VALUE}"\n')
    agent_yaml.write_text(pasted)
    line = next(n for n, text in enumerate(pasted.splitlines(), 1) if VALUE in text)

    refusal = (
        "not committing agents/helper/agent.yaml: it contains a secret (`api_key:` written in the clear)"
    )
    await until(lambda: refusal in caplog.text, within=30)
    assert VALUE not in committed(data, "agents/helper/agent.yaml")
    assert len(subjects(data, "agents/helper/agent.yaml")) == commits
    assert agent_yaml.read_text() == pasted, "the person's file is kept as they saved it"
    assert VALUE not in caplog.text

    report = await diagnose(
        tmp_path / "ws0" / "duragent.yaml", env={"PATH": os.environ["PATH"]}, wait_seconds=1
    )
    warned = [c for c in report.checks if c.name == "secret in agent.yaml"]
    assert len(warned) == 1, report.checks
    assert warned[0].status == "warn"
    assert warned[0].message.startswith(
        f"{agent_yaml}:{line}: `api_key:` holds a secret written in the clear"
    )
    assert VALUE not in str(report.to_dict())


async def test_an_agent_deployed_with_a_literal_key_is_refused_naming_its_line(
    start_api: ApiFactory, tmp_path: Path
) -> None:
    """Over the admin API the refusal comes before anything is written or served: a 422 naming
    the file and line (the commit screen alone refused only the commit, after the agent ran)."""
    api = await start_api(git=True)
    data = tmp_path / "ws0" / "data"
    original = (
        (data / "agents" / "helper" / "agent.yaml").read_text().replace("name: helper", "name: courier")
    )
    pasted = original.replace("    api_key_env: FAKE_LLM_KEY\n", f'    api_key: "{VALUE}"\n')
    line = next(n for n, text in enumerate(pasted.splitlines(), 1) if VALUE in text)

    status, problem = await api.call("PUT", "/api/admin/v1/agents/courier", {"files": {"agent.yaml": pasted}})

    assert status == 422, problem
    [error] = problem["errors"]
    assert error["field"] == f"files.agent.yaml:{line}"
    assert "`api_key:` holds a secret written in the clear" in error["message"]
    assert VALUE not in str(problem)
    assert not (data / "sys" / "dyn_agents" / "courier").exists(), "nothing was written"
    status, _ = await api.call("GET", "/api/admin/v1/agents/courier")
    assert status == 404
    # named as a variable, it deploys
    status, body = await api.call("PUT", "/api/admin/v1/agents/courier", {"files": {"agent.yaml": original}})
    assert status == 201, body
