"""`duragent doctor`: each check against a real workspace, real git, real sockets and a real S3 server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from duragent.cli import build_app
from duragent.client.runfile import write_run_info
from duragent.doctor import Check, DoctorReport, run_doctor
from duragent.scaffold import ProviderChoice, init_workspace

DURAGENT = Path(sys.executable).with_name("duragent")
DEMO = ProviderChoice("demo", "demo", "no API key found")


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh `duragent init` workspace (demo provider) that is the working directory."""
    root = tmp_path / "ws"
    init_workspace(root, provider=DEMO)
    monkeypatch.chdir(root)
    return root


@pytest.fixture
def listening_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture
def closed_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def doctor(root: Path, **env: str) -> DoctorReport:
    return run_doctor(root / "duragent.yaml", env={"PATH": os.environ["PATH"], **env}, wait_seconds=2)


def by_name(report: DoctorReport) -> dict[str, Check]:
    return {check.name: check for check in report.checks}


def write_agent_yaml(root: Path, name: str, text: str) -> None:
    folder = root / ".duragent" / "agents" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "agent.yaml").write_text(text)


def test_doctor_json_on_a_fresh_workspace_is_all_ok_and_exits_0(workspace: Path) -> None:
    result = CliRunner().invoke(build_app(), ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["status"] in ("ok", "warn")
    names = [check["name"] for check in report["checks"]]
    for expected in ("python", "config", "data dir", "git", "data repo", "agent assistant"):
        assert expected in names
    assert {check["status"] for check in report["checks"]} <= {"ok", "warn"}
    assert set(report["checks"][0]) == {"name", "status", "message", "hint"}


def test_text_output_is_one_line_per_check_with_its_status(workspace: Path) -> None:
    result = CliRunner().invoke(build_app(), ["doctor"])
    assert result.exit_code == 0
    assert "ok    data repo: " in result.output
    assert "ok    agent assistant: valid (demo/demo)" in result.output


def test_doctor_finds_the_workspace_from_a_subfolder_like_every_command(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deep = workspace / "notes" / "deep"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    result = CliRunner().invoke(build_app(), ["doctor"])
    assert result.exit_code == 0, result.output
    assert f"ok    config: {workspace / 'duragent.yaml'}" in result.output
    assert "ok    agent assistant: valid (demo/demo)" in result.output


@pytest.mark.slow
def test_a_broken_agent_fails_with_its_location_and_exit_1_as_a_subprocess(workspace: Path) -> None:
    agent_yaml = workspace / ".duragent" / "agents" / "assistant" / "agent.yaml"
    agent_yaml.write_text(agent_yaml.read_text().replace("on_disconnect: pause", "on_disconnect: stop"))
    result = subprocess.run(
        [str(DURAGENT), "doctor", "--json"], cwd=workspace, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["status"] == "fail"
    failed = {check["name"]: check for check in report["checks"] if check["status"] == "fail"}
    assert list(failed) == ["agent assistant"]
    assert "agent.yaml:" in failed["agent assistant"]["message"]
    assert "on_disconnect" in failed["agent assistant"]["message"]
    assert failed["agent assistant"]["hint"]


def test_an_invalid_config_fails_with_file_and_line(workspace: Path) -> None:
    (workspace / "duragent.yaml").write_text("session:\n  on_disconnect: stop\n")
    result = CliRunner().invoke(build_app(), ["doctor"])
    assert result.exit_code == 1
    assert "FAIL  config: " in result.output
    assert "duragent.yaml:2:" in result.output
    assert "hint: " in result.output


def test_unknown_config_keys_are_warnings_not_failures(workspace: Path) -> None:
    (workspace / "duragent.yaml").write_text("sesion:\n  on_disconnect: pause\n")
    report = doctor(workspace)
    assert by_name(report)["config"].status == "warn"
    assert "did you mean 'session'" in by_name(report)["config"].message
    assert report.status == "warn"


def test_a_missing_data_dir_fails_and_suggests_init(tmp_path: Path) -> None:
    (tmp_path / "duragent.yaml").write_text("data_dir: ./nowhere\n")
    check = by_name(doctor(tmp_path))["data dir"]
    assert check.status == "fail"
    assert "does not exist" in check.message
    assert check.hint is not None
    assert "duragent init" in check.hint


def test_a_missing_api_key_fails_without_revealing_anything(workspace: Path, listening_port: int) -> None:
    write_agent_yaml(
        workspace,
        "writer",
        f"name: writer\nmodel:\n  provider: openai\n  name: m\n  base_url: http://127.0.0.1:{listening_port}/v1\n"
        "  api_key_env: OPENAI_API_KEY\n",
    )
    missing = by_name(doctor(workspace))["agent writer key"]
    assert missing.status == "fail"
    assert "OPENAI_API_KEY is not set" in missing.message
    assert missing.hint is not None
    assert "export OPENAI_API_KEY" in missing.hint
    present = by_name(doctor(workspace, OPENAI_API_KEY="sk-value-never-shown"))["agent writer key"]
    assert present.status == "ok"
    assert "sk-value-never-shown" not in present.message
    blank = by_name(doctor(workspace, OPENAI_API_KEY=" \n"))["agent writer key"]
    assert (blank.status, "OPENAI_API_KEY is not set" in blank.message) == ("fail", True)
    broken = by_name(doctor(workspace, OPENAI_API_KEY="sk-value\nnever-shown"))["agent writer key"]
    assert broken.status == "fail"
    assert "line break" in broken.message
    assert "never-shown" not in broken.message


def test_a_server_of_your_own_needs_no_key_unless_agent_yaml_names_its_variable(
    workspace: Path, listening_port: int
) -> None:
    """As the provider sends requests then: docs/testing.md's fake model setup passes doctor."""
    write_agent_yaml(
        workspace,
        "local",
        f"name: local\nmodel:\n  provider: openai\n  name: m\n  base_url: http://127.0.0.1:{listening_port}/v1\n",
    )
    report = doctor(workspace)
    check = by_name(report)["agent local key"]
    assert check.status == "ok", check
    assert f"127.0.0.1:{listening_port}/v1 is asked without a key" in check.message
    assert report.status == "ok"


def test_a_reachable_endpoint_is_ok(workspace: Path, listening_port: int) -> None:
    write_agent_yaml(
        workspace,
        "local",
        f"name: local\nmodel:\n  provider: ollama\n  name: llama3.2\n  base_url: http://127.0.0.1:{listening_port}\n",
    )
    report = doctor(workspace)
    check = by_name(report)[f"endpoint 127.0.0.1:{listening_port}"]
    assert check.status == "ok"
    assert "used by local" in check.message
    assert report.status == "ok"


def test_an_unreachable_endpoint_fails_quickly(workspace: Path, closed_port: int) -> None:
    write_agent_yaml(
        workspace,
        "local",
        f"name: local\nmodel:\n  provider: ollama\n  name: llama3.2\n  base_url: http://127.0.0.1:{closed_port}\n",
    )
    started = time.monotonic()
    check = by_name(doctor(workspace))[f"endpoint 127.0.0.1:{closed_port}"]
    assert check.status == "fail"
    assert time.monotonic() - started < 3


def test_a_stale_index_lock_fails_but_a_fresh_one_does_not(workspace: Path) -> None:
    lock = workspace / ".duragent" / ".git" / "index.lock"
    lock.touch()
    assert by_name(doctor(workspace))["data repo"].status == "ok", "a running git holds a fresh lock"
    old = time.time() - 300
    os.utime(lock, (old, old))
    check = by_name(doctor(workspace))["data repo"]
    assert check.status == "fail"
    assert check.hint == f"if no git command is running: rm {lock}"


def test_a_stale_branch_lock_left_by_a_killed_commit_fails(workspace: Path) -> None:
    """A git killed while moving the branch leaves refs/heads/<branch>.lock: no commit passes it."""
    git_dir = workspace / ".duragent" / ".git"
    branch = (git_dir / "HEAD").read_text().split("refs/heads/")[1].strip()
    lock = git_dir / "refs" / "heads" / f"{branch}.lock"
    lock.write_text("0" * 40 + "\n")
    old = time.time() - 300
    os.utime(lock, (old, old))
    check = by_name(doctor(workspace))["data repo"]
    assert check.status == "fail"
    assert check.message == f"{lock} is 5 min old and blocks every commit"
    assert check.hint == f"if no git command is running: rm {lock}"


def test_files_a_running_server_has_yet_to_commit_are_not_called_left_behind(workspace: Path) -> None:
    """The server commits after a quiet moment: a doctor run in between must not say a stopped
    server left them (the first thing a newcomer runs after `duragent send`)."""
    session = workspace / ".duragent" / "sessions" / "s_pending"
    session.mkdir(parents=True)
    (session / "events.jsonl").write_text("{}\n")
    stopped = by_name(doctor(workspace))["data repo"]
    assert stopped.status == "warn"
    assert "a server that stopped before committing left them" in (stopped.hint or "")

    write_run_info(workspace / ".duragent", {"pid": os.getpid(), "url": "http://127.0.0.1:1"})
    running = by_name(doctor(workspace))["data repo"]
    assert running.status == "ok"
    assert "the running server has 1 file still to commit: sessions/s_pending (1)" in running.message


def test_a_data_dir_that_is_not_a_repository_is_a_warning(tmp_path: Path) -> None:
    init_workspace(tmp_path, provider=DEMO, git=False)
    check = by_name(doctor(tmp_path))["data repo"]
    assert check.status == "warn"
    assert "not a git repository" in check.message


def test_gateway_commands_must_be_on_path(workspace: Path) -> None:
    (workspace / "duragent.yaml").write_text(
        "gateways:\n  external:\n"
        "    - name: telegram\n      command: duragent-gateway-does-not-exist\n"
        "    - name: shell\n      command: git\n"
    )
    checks = by_name(doctor(workspace))
    assert checks["gateway telegram"].status == "fail"
    assert "duragent.yaml:4:" in checks["gateway telegram"].message
    assert checks["gateway shell"].status == "ok"


def test_unreachable_postgres_fails_without_showing_the_password(workspace: Path, closed_port: int) -> None:
    (workspace / "duragent.yaml").write_text(
        "services:\n  session:\n    backend: postgres\n"
        f"    url: postgresql://duragent:hunter2@127.0.0.1:{closed_port}/duragent\n"
    )
    check = by_name(doctor(workspace))["postgres (session)"]
    assert check.status == "fail"
    assert f"127.0.0.1:{closed_port}/duragent" in check.message
    assert "hunter2" not in check.message


@pytest.fixture
def s3_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A real S3-compatible server (moto) on 127.0.0.1 with a bucket named `artifacts`."""
    import boto3
    from moto.server import ThreadedMotoServer

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=url, region_name="us-east-1").create_bucket(Bucket="artifacts")
    yield url
    server.stop()


@pytest.mark.slow
def test_s3_bucket_reachable_is_ok_and_a_missing_bucket_fails(workspace: Path, s3_server: str) -> None:
    config = "services:\n  artifacts:\n    backend: s3\n    bucket: {bucket}\n    region: us-east-1\n"
    config += f"    endpoint_url: {s3_server}\n"
    (workspace / "duragent.yaml").write_text(config.format(bucket="artifacts"))
    assert by_name(doctor(workspace))["s3 (artifacts)"].status == "ok"
    (workspace / "duragent.yaml").write_text(config.format(bucket="no-such-bucket"))
    missing = by_name(doctor(workspace))["s3 (artifacts)"]
    assert (missing.status, missing.message) == (
        "fail",
        f"bucket no-such-bucket at {s3_server} does not exist",
    )
    assert "create it" in (missing.hint or "")


def test_a_schedule_file_that_does_not_load_is_named_with_its_place(workspace: Path) -> None:
    schedules = workspace / ".duragent" / "schedules"
    schedules.mkdir(parents=True, exist_ok=True)
    (schedules / "sch_broken.yaml").write_text("id: sch_broken\nagent: assistant\nwhen: [not, a, time\n")

    checks = by_name(doctor(workspace))

    assert checks["schedules"].status == "warn"
    assert checks["schedules"].message.startswith("0 valid, 1 skipped as invalid:")
    assert "schedules/sch_broken.yaml" in checks["schedules"].message
    assert "duragent schedule rm" in (checks["schedules"].hint or "")


def test_mcp_server_commands_must_be_on_path_and_missing_variables_are_named(workspace: Path) -> None:
    (workspace / "duragent.yaml").write_text(
        "mcp_servers:\n"
        "  - name: ghost\n    command: mcp-server-does-not-exist\n"
        "  - name: shell\n    command: git\n    env: [MCP_DOCTOR_UNSET]\n"
        "  - name: remote\n    url: http://127.0.0.1:9/mcp\n"
    )
    [agent_yaml] = (workspace / ".duragent" / "agents").glob("*/agent.yaml")
    agent = agent_yaml.parent.name
    agent_yaml.write_text(
        agent_yaml.read_text() + "  mcp_servers:\n    - name: mine\n      command: also-not-there\n"
    )

    checks = by_name(doctor(workspace))

    assert checks["mcp server ghost"].status == "fail"
    assert "duragent.yaml:2:" in checks["mcp server ghost"].message
    assert "'mcp-server-does-not-exist' is not on PATH" in checks["mcp server ghost"].message
    assert checks["mcp server shell"].status == "warn"
    assert "MCP_DOCTOR_UNSET not set" in checks["mcp server shell"].message
    assert "mcp server remote" not in checks
    mine = checks[f"mcp server {agent}/mine"]
    assert mine.status == "fail"
    assert f"{agent}/agent.yaml:" in mine.message


def test_invalid_skills_and_tool_folders_are_named_with_their_file_and_line(workspace: Path) -> None:
    skills = workspace / ".duragent" / "skills"
    (skills / "good").mkdir(parents=True)
    (skills / "good" / "SKILL.md").write_text("---\nname: good\ndescription: Works.\n---\nDo it.\n")
    (skills / "bad").mkdir()
    (skills / "bad" / "SKILL.md").write_text("---\ndescription: Broken.\nname: Not A Name!\n---\nBody.\n")
    tools = workspace / ".duragent" / "agents" / "assistant" / "tools"
    (tools / "hello").mkdir(parents=True)
    (tools / "hello" / "run").write_text("#!/bin/sh\necho hi\n")
    (tools / "hello" / "run").chmod(0o755)
    (tools / "stuck").mkdir()
    (tools / "stuck" / "run").write_text("#!/bin/sh\necho never\n")  # not executable

    checks = by_name(doctor(workspace))

    assert checks["skills"].status == "warn"
    assert checks["skills"].message.startswith("1 valid, 1 skipped as invalid:")
    assert ".duragent/skills/bad/SKILL.md:3" in checks["skills"].message
    assert checks["tool folders"].status == "warn"
    assert checks["tool folders"].message.startswith("1 valid, 1 skipped as invalid:")
    assert "agents/assistant/tools/stuck: run is not executable" in checks["tool folders"].message
    assert "chmod +x" in (checks["tool folders"].hint or "")


def test_valid_skills_and_tool_folders_are_ok(workspace: Path) -> None:
    (workspace / ".duragent" / "skills" / "good").mkdir(parents=True)
    (workspace / ".duragent" / "skills" / "good" / "SKILL.md").write_text(
        "---\nname: good\ndescription: Works.\n---\nDo it.\n"
    )

    checks = by_name(doctor(workspace))

    assert (checks["skills"].status, checks["skills"].message) == ("ok", "1 valid")
    assert (checks["tool folders"].status, checks["tool folders"].message) == ("ok", "none")


def test_doctor_says_whether_tmux_is_installed_and_warns_only_agents_that_need_it(
    workspace: Path, tmp_path: Path
) -> None:
    with_tmux = tmp_path / "with-tmux"
    with_tmux.mkdir()
    (with_tmux / "tmux").write_text("#!/bin/sh\necho tmux 3.4\n")
    (with_tmux / "tmux").chmod(0o755)
    without_tmux = tmp_path / "without-tmux"
    without_tmux.mkdir()

    installed = by_name(run_doctor(workspace / "duragent.yaml", env={"PATH": str(with_tmux)}))["tmux"]
    unneeded = by_name(run_doctor(workspace / "duragent.yaml", env={"PATH": str(without_tmux)}))["tmux"]
    write_agent_yaml(
        workspace,
        "watcher",
        "name: watcher\nmodel:\n  provider: demo\n  name: demo\ntools: [background_process]\n",
    )
    needed = by_name(run_doctor(workspace / "duragent.yaml", env={"PATH": str(without_tmux)}))["tmux"]

    assert installed.status == "ok"
    assert str(with_tmux / "tmux") in installed.message
    assert unneeded.status == "ok"
    assert "not installed" in unneeded.message
    assert needed.status == "warn"
    assert "background_process (agents watcher)" in needed.message
    assert "install tmux" in (needed.hint or "")


def test_an_agent_a_gateway_routes_to_must_list_who_may_talk_to_it(workspace: Path) -> None:
    (workspace / "duragent.yaml").write_text(
        "gateways:\n  external:\n    - name: telegram\n      command: git\n"
        "routes:\n  - match: {gateway: telegram}\n    agent: assistant\n"
    )
    agent_yaml = workspace / ".duragent" / "agents" / "assistant" / "agent.yaml"
    original = agent_yaml.read_text()

    nobody = by_name(doctor(workspace))["access assistant"]
    agent_yaml.write_text(original + "  access:\n    dm: {policy: open}\n")
    anyone = by_name(doctor(workspace))["access assistant"]
    agent_yaml.write_text(original + "  access:\n    dm: {allowlist: ['424242']}\n")
    owner = by_name(doctor(workspace))["access assistant"]

    assert nobody.status == "warn"
    assert "answers nobody" in nobody.message
    assert nobody.hint is not None
    assert "spec.access.dm.allowlist" in nobody.hint
    assert anyone.status == "warn"
    assert "answers anyone in direct messages" in anyone.message
    assert (owner.status, owner.message) == ("ok", "answers 1 sender(s) directly and 0 group chat(s)")
