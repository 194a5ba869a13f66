"""A new user's first hour, as they meet it: `duragent` commands in a shell, servers they never start.

Every test runs the real `duragent` command line in fresh workspaces; the servers are the ones
`send` starts in the background (issue #15 items 1-4 and 10).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from duragent.testing.fake_llm import FakeLLMServer, ScriptedResponse, text, tool_calls
from tests.waiting import until

pytest_plugins = ["duragent.testing.pytest_plugin"]

# Each test starts real servers; on a loaded 2-core machine that takes far longer than usual.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENROUTER_API_KEY", "DURAGENT_CONFIG")


def shell_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in KEYS}
    env.update(NO_COLOR="1", DURAGENT_CLIENT_ID="first-hour", **extra)
    return env


async def duragent(
    cwd: Path, *args: str, env: dict[str, str] | None = None, program: tuple[str, ...] = ("-m", "duragent")
) -> Done:
    """Run `duragent ARGS` in `cwd` (asynchronously: the fake model in this process keeps answering).

    `program` is what Python runs (`-c CODE` runs the command line some other way).
    """
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *program,
        *args,
        cwd=cwd,
        env=env or shell_env(),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 240)
    assert process.returncode is not None
    return Done(process.returncode, out.decode(), err.decode())


@dataclass(frozen=True)
class Done:
    returncode: int
    stdout: str
    stderr: str


async def init(folder: Path) -> Path:
    done = await duragent(folder.parent, "init", "--yes", str(folder))
    assert done.returncode == 0, done.stderr
    return folder


def run_info(workspace: Path) -> dict[str, Any]:
    return dict(json.loads((workspace / ".duragent" / "run" / "serve.json").read_text()))


def stop(workspace: Path) -> None:
    try:
        pid = int(run_info(workspace)["pid"])
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


@pytest.fixture
def workspaces(tmp_path: Path) -> Iterator[list[Path]]:
    """Workspaces a test creates; each one's background server is stopped afterwards."""
    made: list[Path] = []
    yield made
    for workspace in made:
        stop(workspace)


async def test_two_workspaces_each_start_their_own_server_on_a_free_port(
    tmp_path: Path, workspaces: list[Path]
) -> None:
    first, second = await init(tmp_path / "first"), await init(tmp_path / "second")
    workspaces += [first, second]
    for workspace in (first, second):
        done = await duragent(workspace, "send", "hello there")
        assert done.returncode == 0, done.stderr
        assert 'You wrote 2 words: "hello there"' in done.stdout
        assert "started the workspace's server" in done.stderr
    ports = {run_info(first)["port"], run_info(second)["port"]}
    assert len(ports) == 2
    assert 8080 not in ports
    again = await duragent(first, "send", "still you?")
    assert again.returncode == 0, again.stderr
    assert "started" not in again.stderr  # the running server is found through run/serve.json


@pytest.mark.parametrize("command", [("send", "hi"), ("chat",)], ids=["send", "chat"])
async def test_a_taken_explicit_port_names_its_holder_and_the_setting_to_change_after_one_start(
    tmp_path: Path, workspaces: list[Path], command: tuple[str, ...]
) -> None:
    """The server the client starts exits: the client says why and where its log is, and does not
    start it again to find out."""
    workspace = await init(tmp_path / "ws")
    workspaces.append(workspace)
    log = (workspace / ".duragent" / "logs" / "serve.log").resolve()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with (workspace / "duragent.yaml").open("a") as config:
            config.write(f"server:\n  port: {port}\n")
        done = await duragent(workspace, *command)
    assert done.returncode == 1, done.stderr
    what, why = done.stderr.splitlines()
    assert what.startswith("error: the server could not start (exit status ")
    assert what.endswith(f"; log: {log}):")
    assert why.startswith(f"  error: port {port} on 127.0.0.1 is already in use by pid {os.getpid()}")
    assert "server.port" in why
    assert log.read_text().count("started by a terminal client") == 1
    assert "Traceback" not in (workspace / ".duragent" / "logs" / "serve.log").read_text()


async def test_outside_a_workspace_every_command_says_so_and_creates_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for command in (["send", "hi"], ["chat"], ["attach", "--list"], ["session", "list"], ["memory", "show"]):
        done = await duragent(empty, *command)
        assert done.returncode == 2, (command, done.stderr)
        assert "not a Duragent workspace (or any parent): run duragent init" in done.stderr
    assert list(empty.iterdir()) == []


async def test_commands_find_the_workspace_from_a_subfolder(tmp_path: Path, workspaces: list[Path]) -> None:
    workspace = await init(tmp_path / "ws")
    workspaces.append(workspace)
    deep = workspace / "notes" / "today"
    deep.mkdir(parents=True)
    done = await duragent(deep, "send", "from deep inside")
    assert done.returncode == 0, done.stderr
    assert 'You wrote 3 words: "from deep inside"' in done.stdout
    assert not (deep / ".duragent").exists()


async def test_agents_created_or_edited_while_the_server_runs_are_used_by_the_next_send(
    tmp_path: Path, workspaces: list[Path]
) -> None:
    workspace = await init(tmp_path / "ws")
    workspaces.append(workspace)
    assert (await duragent(workspace, "send", "hi")).returncode == 0
    created = await duragent(workspace, "agent", "create", "helper")
    assert created.returncode == 0, created.stderr
    done = await duragent(workspace, "send", "--agent", "helper", "hello helper")
    assert done.returncode == 0, done.stderr
    assert 'You wrote 2 words: "hello helper"' in done.stdout
    # An edit of the agent: without its memory tool, the demo says it cannot remember.
    agent_yaml = workspace / ".duragent" / "agents" / "helper" / "agent.yaml"
    edited_source = agent_yaml.read_text().replace("      - memory\n", "")
    agent_yaml.write_text(edited_source.replace("    enabled: true\n", "    enabled: false\n"))
    deadline = time.monotonic() + 20
    while True:
        edited = await duragent(workspace, "send", "--agent", "helper", "--new", "remember the tea")
        if "has no memory tool" in edited.stdout or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert "this agent has no memory tool" in edited.stdout, edited.stdout + edited.stderr


async def test_a_policy_edit_applies_to_the_next_turn(
    tmp_path: Path, workspaces: list[Path], fake_llm: FakeLLMServer
) -> None:
    workspace = await init(tmp_path / "ws")
    workspaces.append(workspace)
    _use_fake_model(workspace, fake_llm, tools="      - bash\n")
    policy = workspace / ".duragent" / "agents" / "assistant" / "policy.yaml"
    policy.write_text("mode: ask\nallow: []\n")
    fake_llm.enqueue(_bash_call("echo policy-test"))
    asked = await duragent(workspace, "send", "--json", "run it", env=shell_env(OPENAI_API_KEY="k"))
    assert asked.returncode == 3, asked.stdout + asked.stderr
    policy.write_text('mode: ask\nallow:\n  - "bash:echo *"\n')
    fake_llm.enqueue(_bash_call("echo policy-test"), text("ran it"))
    done = await duragent(workspace, "send", "--new", "run it", env=shell_env(OPENAI_API_KEY="k"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ran it" in done.stdout


async def test_an_exported_api_key_reaches_the_next_send(
    tmp_path: Path, workspaces: list[Path], fake_llm: FakeLLMServer
) -> None:
    workspace = await init(tmp_path / "ws")
    workspaces.append(workspace)
    _use_fake_model(workspace, fake_llm)
    missing = await duragent(workspace, "send", "hello")
    assert missing.returncode == 1
    assert "set the environment variable OPENAI_API_KEY" in missing.stderr
    assert "MissingApiKey" not in missing.stderr
    assert "(internal)" not in missing.stderr
    first_pid = run_info(workspace)["pid"]
    fake_llm.enqueue(text("hello with a key"))
    done = await duragent(workspace, "send", "hello", env=shell_env(OPENAI_API_KEY="sk-now-exported"))
    assert done.returncode == 0, done.stderr
    assert "hello with a key" in done.stdout
    assert "restarted the workspace's server" in done.stderr
    assert "OPENAI_API_KEY" in done.stderr
    assert run_info(workspace)["pid"] != first_pid
    assert "sk-now-exported" not in (workspace / ".duragent" / "run" / "serve.json").read_text()


async def served_with_a_key(
    tmp_path: Path, workspaces: list[Path], fake_llm: FakeLLMServer, key: str
) -> Path:
    """A workspace on the fake model whose server a `send` started from a shell with OPENAI_API_KEY=`key`."""
    workspace = await init(tmp_path / "ws")
    workspaces.append(workspace)
    _use_fake_model(workspace, fake_llm)
    fake_llm.enqueue(text("hello"))
    sent = await duragent(workspace, "send", "hello", env=shell_env(OPENAI_API_KEY=key))
    assert sent.returncode == 0, sent.stderr
    return workspace


async def test_a_shell_without_the_key_leaves_the_server_that_has_it_running(
    tmp_path: Path, workspaces: list[Path], fake_llm: FakeLLMServer
) -> None:
    """A second terminal, a cron job: its command must not restart the server without the key
    (its schedules would fail on it from then on)."""
    workspace = await served_with_a_key(tmp_path, workspaces, fake_llm, "sk-the-key")
    pid = run_info(workspace)["pid"]

    fake_llm.enqueue(text("still with the key"))
    keyless = await duragent(workspace, "send", "--new", "hello again")

    assert keyless.returncode == 0, keyless.stderr
    assert "still with the key" in keyless.stdout
    assert "restarted the workspace's server" not in keyless.stderr
    assert run_info(workspace)["pid"] == pid


async def test_a_schedule_run_says_when_it_restarted_the_server_for_a_new_key(
    tmp_path: Path, workspaces: list[Path], fake_llm: FakeLLMServer
) -> None:
    workspace = await served_with_a_key(tmp_path, workspaces, fake_llm, "sk-old")
    added = await duragent(
        workspace, "schedule", "add", "--agent", "assistant", "--every", "1h", "--task", "say hi"
    )
    assert added.returncode == 0, added.stderr
    [schedule_id] = re.findall(r"sch_[0-9A-Za-z]+", added.stdout)
    fake_llm.enqueue(text("hi"))

    ran = await duragent(workspace, "schedule", "run", schedule_id, env=shell_env(OPENAI_API_KEY="sk-new"))

    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "restarted the workspace's server" in ran.stderr
    assert "OPENAI_API_KEY" in ran.stderr
    assert f"{schedule_id}: ok" in ran.stdout


async def test_a_schedule_run_of_a_schedule_nobody_has_starts_no_server(
    tmp_path: Path, workspaces: list[Path]
) -> None:
    """A mistyped id is said at once, as `pause` says it: starting a server only to hear 404 costs
    a second and leaves a server behind."""
    workspace = await init(tmp_path / "ws")
    workspaces.append(workspace)

    for mistyped in ("sch_nope", "sch_01ABCDEFGHJKMNPQRSTVWXYZ01"):
        ran = await duragent(workspace, "schedule", "run", mistyped)

        assert ran.returncode == 1
        assert f"no schedule {mistyped!r}" in ran.stderr
        assert "started the workspace's server" not in ran.stderr
    assert not (workspace / ".duragent" / "run" / "serve.json").exists()


async def test_an_edited_duragent_yaml_reaches_the_next_send(tmp_path: Path, workspaces: list[Path]) -> None:
    workspace = await init(tmp_path / "ws")
    workspaces.append(workspace)
    assert (await duragent(workspace, "send", "hi")).returncode == 0
    other_agents = workspace / "more-agents"
    done = await duragent(workspace, "agent", "create", "scribe")
    assert done.returncode == 0, done.stderr
    other_agents.mkdir()
    (workspace / ".duragent" / "agents" / "scribe").rename(other_agents / "scribe")
    with (workspace / "duragent.yaml").open("a") as config:
        config.write("agents:\n  static:\n    path: ./more-agents/\n")
    moved = await duragent(workspace, "send", "--agent", "scribe", "where are you")
    assert moved.returncode == 0, moved.stderr
    assert "restarted the workspace's server: duragent.yaml changed" in moved.stderr
    assert 'You wrote 3 words: "where are you"' in moved.stdout


async def test_a_broken_agent_blocks_nothing_else(tmp_path: Path, workspaces: list[Path]) -> None:
    workspace = await init(tmp_path / "ws")
    workspaces.append(workspace)
    assert (await duragent(workspace, "agent", "create", "helper")).returncode == 0
    broken = workspace / ".duragent" / "agents" / "helper" / "agent.yaml"
    broken.write_text(broken.read_text().replace("  model:\n", "  modle:\n", 1))
    done = await duragent(workspace, "send", "--agent", "assistant", "still here?")
    assert done.returncode == 0, done.stderr
    assert 'You wrote 2 words: "still here?"' in done.stdout
    refused = await duragent(workspace, "send", "--agent", "helper", "hi")
    assert refused.returncode == 2
    assert ".duragent/agents/helper/agent.yaml:" in refused.stderr
    assert "spec.model is required" in refused.stderr
    ready = await asyncio.to_thread(_get_json, run_info(workspace)["url"] + "/readyz")
    assert ready["status"] == "degraded"
    assert ready["workspace_hash"]
    missing, misspelt = ready["agents"]["helper"]
    assert "spec.model is required" in missing
    assert "unknown key 'spec.modle' is ignored (did you mean 'model'?)" in misspelt
    for problem in (missing, misspelt):
        assert problem.startswith(".duragent/agents/helper/agent.yaml:")
        assert problem.split(":")[1].isdigit()
        assert problem.split(":")[2].isdigit()
    status = await duragent(workspace, "serve", "status")
    assert status.returncode == 0
    assert "helper" in status.stdout
    assert "spec.model is required" in status.stdout


async def test_send_warns_when_its_agent_answers_as_it_was_before_a_broken_edit(
    tmp_path: Path, workspaces: list[Path]
) -> None:
    """A typo in agent.yaml while the server runs keeps the last valid version answering: the
    person who made the edit must hear of it where they talk to the agent, not only in serve.log."""
    workspace = await init(tmp_path / "ws")
    workspaces.append(workspace)
    assert (await duragent(workspace, "send", "hello")).returncode == 0
    agent_yaml = workspace / ".duragent" / "agents" / "assistant" / "agent.yaml"
    agent_yaml.write_text(agent_yaml.read_text().replace("    provider: demo\n", "    provider: demoo\n"))
    readyz = run_info(workspace)["url"] + "/readyz"
    await until(lambda: _get_json(readyz)["agents"].get("assistant"))

    done = await duragent(workspace, "send", "hello again")

    assert done.returncode == 0, done.stderr
    assert 'You wrote 2 words: "hello again"' in done.stdout
    assert "warning: agent 'assistant' answers as its last valid version" in done.stderr
    assert ".duragent/agents/assistant/agent.yaml:" in done.stderr
    assert "got 'demoo'" in done.stderr


def _use_fake_model(workspace: Path, fake_llm: FakeLLMServer, tools: str = "") -> None:
    agent_yaml = workspace / ".duragent" / "agents" / "assistant" / "agent.yaml"
    source = agent_yaml.read_text()
    source = source.replace(
        "    provider: demo\n    name: demo\n",
        f"    provider: openai\n    name: gpt-test\n    base_url: {fake_llm.url}\n"
        "    api_key_env: OPENAI_API_KEY\n",
    )
    if tools:
        source = source.replace("      - memory\n", "      - memory\n" + tools)
    agent_yaml.write_text(source)


def _bash_call(command: str) -> ScriptedResponse:
    return tool_calls([("bash", {"command": command})])


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url) as response:
        return json.loads(response.read())


async def test_a_session_is_named_by_any_unique_start_of_its_id(
    tmp_path: Path, workspaces: list[Path]
) -> None:
    workspace = await init(tmp_path / "ws")
    workspaces.append(workspace)
    first = await duragent(workspace, "send", "--json", "first words")
    assert first.returncode == 0, first.stderr
    session_id = json.loads(first.stdout)["session_id"]
    prefix = session_id[:10]
    again = await duragent(workspace, "send", "--session", prefix, "second words")
    assert again.returncode == 0, again.stderr
    shown = await duragent(workspace, "session", "show", prefix)
    assert shown.returncode == 0, shown.stderr
    assert f"session   {session_id}" in shown.stdout
    log = await duragent(workspace, "session", "log", prefix)
    assert "first words" in log.stdout
    assert "second words" in log.stdout
    unknown = await duragent(workspace, "session", "show", "s_ZZZZ")
    assert unknown.returncode == 1
    assert "session 's_ZZZZ' not found" in unknown.stderr


#: Runs `duragent ARGV...` as the console script does, then reports which heavy modules it loaded.
_REPORT_IMPORTS = """
import sys
from duragent.cli import main
try:
    main()
except SystemExit as exit:
    code = exit.code
else:
    code = 0
heavy = sorted(m for m in ("aiohttp", "typer", "pydantic", "yaml") if m in sys.modules)
print("LOADED " + ",".join(heavy), file=sys.stderr)
sys.exit(code)
"""


async def test_a_warm_send_answers_without_loading_typer_pydantic_or_aiohttp(
    tmp_path: Path, workspaces: list[Path]
) -> None:
    """Issue #15.5: once the server runs, `send` is one small request, not half a second of imports."""
    workspace = await init(tmp_path / "ws")
    workspaces.append(workspace)
    cold = await duragent(workspace, "send", "--json", "first words")
    assert cold.returncode == 0, cold.stderr
    session_id = json.loads(cold.stdout)["session_id"]

    async def warm(*args: str) -> Done:
        return await duragent(workspace, *args, program=("-c", _REPORT_IMPORTS))

    plain = await warm("send", "second words")
    assert plain.returncode == 0, plain.stderr
    assert 'You wrote 2 words: "second words"' in plain.stdout
    assert "LOADED \n" in plain.stderr  # none of them

    as_json = await warm("send", "--json", "--session", session_id[:10], "third words")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["session_id"] == session_id
    assert json.loads(as_json.stdout)["status"] == "complete"
    assert "LOADED \n" in as_json.stderr

    # what it does not handle goes to the full command, which behaves as before
    with_server = await warm("send", "--server", run_info(workspace)["url"], "fourth words")
    assert with_server.returncode == 0, with_server.stderr
    assert "LOADED aiohttp,pydantic,typer,yaml" in with_server.stderr
    unknown = await warm("send", "--agent", "nobody", "hello")
    assert unknown.returncode == 1
    assert "unknown agent 'nobody'" in unknown.stderr

    log = await duragent(workspace, "session", "log", session_id)
    for words in ("first words", "second words", "third words", "fourth words"):
        assert log.stdout.count(words) >= 1


async def test_a_cold_send_starts_the_server_without_loading_typer_pydantic_or_aiohttp(
    tmp_path: Path, workspaces: list[Path]
) -> None:
    """Issue #15.5: a cold `send` costs the server's start and the turn, not the full command's imports."""
    workspace = await init(tmp_path / "ws")
    workspaces.append(workspace)

    cold = await duragent(workspace, "send", "first words", program=("-c", _REPORT_IMPORTS))

    assert cold.returncode == 0, cold.stderr
    assert 'You wrote 2 words: "first words"' in cold.stdout
    assert "started the workspace's server (pid " in cold.stderr
    assert "LOADED \n" in cold.stderr  # none of them
    assert run_info(workspace)["auto_started"] is True
    again = await duragent(workspace, "send", "second words")
    assert again.returncode == 0, again.stderr
    assert "started" not in again.stderr  # the same server answered


async def test_a_cold_send_in_a_workspace_whose_duragent_yaml_is_broken_names_the_error(
    tmp_path: Path, workspaces: list[Path]
) -> None:
    """The server it would start cannot: the message is the configuration's error, not the server's log."""
    workspace = await init(tmp_path / "ws")
    workspaces.append(workspace)
    config = workspace / "duragent.yaml"
    config.write_text(config.read_text().replace("on_disconnect: continue", "on_disconnect: sometimes"))

    cold = await duragent(workspace, "send", "hello")

    assert cold.returncode == 2, cold.stderr
    assert "duragent.yaml" in cold.stderr
    assert "on_disconnect" in cold.stderr
    assert "could not start" not in cold.stderr
    assert not (workspace / ".duragent" / "run" / "serve.json").exists()


async def test_a_server_started_before_duragent_yaml_broke_can_still_be_checked_on_and_stopped(
    tmp_path: Path, workspaces: list[Path]
) -> None:
    """A typo saved while the server runs: `serve status` and `serve stop` still reach that server
    (the typo is a warning with its file:line), instead of refusing until the file is fixed."""
    workspace = await init(tmp_path / "ws")
    workspaces.append(workspace)
    assert (await duragent(workspace, "send", "hello")).returncode == 0
    pid = run_info(workspace)["pid"]
    with (workspace / "duragent.yaml").open("a") as config:
        config.write("session:\n  on_disconnect: continue\n   max_background_runtime: 30m\n")

    status = await duragent(workspace / ".duragent", "serve", "status")
    assert status.returncode == 0, status.stderr
    assert f"running: pid {pid} at " in status.stdout
    assert re.match(r"warning: \.\./duragent\.yaml:\d+:\d+: invalid YAML", status.stderr), status.stderr

    stopped = await duragent(workspace, "serve", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert f"stopped (pid {pid})" in stopped.stdout
    assert not (workspace / ".duragent" / "run" / "serve.json").exists()


async def test_a_mistyped_key_in_agent_yaml_is_a_warning_where_you_talk_to_the_agent(
    tmp_path: Path, workspaces: list[Path]
) -> None:
    """An unknown key in agent.yaml is ignored, as in duragent.yaml: `send` must say so with its
    file:line (not only `agent validate`), whether the typo was there when the server started or
    saved while it runs."""
    workspace = await init(tmp_path / "ws")
    workspaces.append(workspace)
    agent_yaml = workspace / ".duragent" / "agents" / "assistant" / "agent.yaml"
    agent_yaml.write_text(
        agent_yaml.read_text().replace("    on_disconnect: pause\n", "    on_disconect: pause\n")
    )

    cold = await duragent(workspace, "send", "hello")

    assert cold.returncode == 0, cold.stderr
    assert '"hello"' in cold.stdout
    expected = re.compile(
        r"^warning: \.duragent/agents/assistant/agent\.yaml:\d+:\d+: unknown key "
        r"'spec\.session\.on_disconect' is ignored \(did you mean 'on_disconnect'\?\)$",
        re.MULTILINE,
    )
    assert expected.search(cold.stderr), cold.stderr
    assert "on_disconect" in (workspace / ".duragent" / "logs" / "serve.log").read_text()

    agent_yaml.write_text(agent_yaml.read_text().replace("    enabled: true\n", "    enabeld: true\n", 1))
    readyz = run_info(workspace)["url"] + "/readyz"
    await until(lambda: len(_get_json(readyz)["agent_warnings"].get("assistant", [])) == 2)

    warm = await duragent(workspace, "send", "hello again")

    assert warm.returncode == 0, warm.stderr
    assert expected.search(warm.stderr), warm.stderr
    assert "unknown key 'spec.memory.enabeld' is ignored" in warm.stderr
    status = await duragent(workspace, "serve", "status")
    assert (
        "  agent assistant answers, with warnings:\n    .duragent/agents/assistant/agent.yaml:"
        in status.stdout
    )


async def test_a_mistyped_key_in_duragent_yaml_is_said_by_send_to_a_running_server(
    tmp_path: Path, workspaces: list[Path]
) -> None:
    """`send` to a running server reads no duragent.yaml itself (it is fast for that): the server's
    own reading is what it says, once; the cold start says its own, also once."""
    workspace = await init(tmp_path / "ws")
    workspaces.append(workspace)
    config = workspace / "duragent.yaml"
    config.write_text(config.read_text() + "sesion:\n  on_disconnect: pause\n")

    cold = await duragent(workspace, "send", "hello")
    warm = await duragent(workspace, "send", "hello again")

    for said in (cold, warm):
        assert said.returncode == 0, said.stderr
        assert said.stderr.count("unknown key 'sesion' is ignored") == 1, said.stderr
    assert "(in the running server's configuration)" in warm.stderr


async def test_a_session_of_another_agent_is_refused_rather_than_answered_by_it(
    tmp_path: Path, workspaces: list[Path]
) -> None:
    """`--agent helper --session <assistant's session>` used to go to assistant without a word."""
    workspace = await init(tmp_path / "ws")
    workspaces.append(workspace)
    assert (await duragent(workspace, "agent", "create", "helper")).returncode == 0
    first = await duragent(workspace, "send", "--agent", "assistant", "--json", "hello")
    assert first.returncode == 0, first.stderr
    session_id = json.loads(first.stdout)["session_id"]

    refused = await duragent(workspace, "send", "--agent", "helper", "--session", session_id[:10], "hi")

    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"session {session_id} belongs to agent 'assistant', not 'helper'" in refused.stderr
    log = await duragent(workspace, "session", "log", session_id)
    assert "hi\n" not in log.stdout
    same = await duragent(workspace, "send", "--agent", "assistant", "--session", session_id[:10], "again")
    assert same.returncode == 0, same.stderr


async def test_chat_local_beside_the_workspaces_server_says_what_to_do(
    tmp_path: Path, workspaces: list[Path]
) -> None:
    """Not "data directory … is in use by pid N": which server, and the two ways on."""
    workspace = await init(tmp_path / "ws")
    workspaces.append(workspace)
    assert (await duragent(workspace, "send", "hello")).returncode == 0
    info = run_info(workspace)

    local = await duragent(workspace, "chat", "--local")

    assert local.returncode == 2, local.stdout + local.stderr
    assert f"the workspace's server is running (pid {info['pid']}, {info['url']})" in local.stderr
    assert "leave out --local" in local.stderr
    assert "duragent serve stop" in local.stderr
    assert "is in use by" not in local.stderr


async def test_serve_by_hand_beside_the_background_server_names_it_and_how_to_stop_it(
    tmp_path: Path, workspaces: list[Path]
) -> None:
    """Not "data directory … is in use by pid N (duragent serve for …)": which server, and what to run."""
    workspace = await init(tmp_path / "ws")
    workspaces.append(workspace)
    assert (await duragent(workspace, "send", "hello")).returncode == 0
    info = run_info(workspace)

    second = await duragent(workspace, "serve", "--port", "0")

    assert second.returncode == 2, second.stderr
    assert second.stderr.startswith(
        f"error: the workspace's server is already running (pid {info['pid']}, {info['url']}, "
        "started by a terminal client)"
    )
    assert "`duragent serve stop` stops it" in second.stderr
    assert run_info(workspace)["pid"] == info["pid"]


async def test_a_broken_policy_yaml_stops_its_agent_as_a_broken_agent_yaml_does(
    tmp_path: Path, workspaces: list[Path]
) -> None:
    """policy.yaml is one of the agent's files: the runtime reads it in every turn."""
    workspace = await init(tmp_path / "ws")
    workspaces.append(workspace)
    policy = workspace / ".duragent" / "agents" / "assistant" / "policy.yaml"
    policy.write_text("mode: sometimes\n")

    refused = await duragent(workspace, "send", "hi")

    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "agent 'assistant' cannot answer until its files are fixed" in refused.stderr
    problems = refused.stderr.split("cannot answer until its files are fixed:\n", 1)[1]
    assert problems.startswith(".duragent/agents/assistant/policy.yaml:1:7: mode must be"), problems
    ready = await asyncio.to_thread(_get_json, run_info(workspace)["url"] + "/readyz")
    assert ready["status"] == "degraded"
    [problem] = ready["agents"]["assistant"]
    assert problem.startswith(".duragent/agents/assistant/policy.yaml:1:7: ")

    pid = run_info(workspace)["pid"]
    policy.write_text("mode: ask\n")
    fixed = await duragent(workspace, "send", "hi again")

    assert fixed.returncode == 0, fixed.stderr
    assert 'You wrote 2 words: "hi again"' in fixed.stdout
    assert run_info(workspace)["pid"] == pid  # no restart


async def test_a_policy_yaml_broken_while_the_server_runs_keeps_the_last_valid_one_and_says_so(
    tmp_path: Path, workspaces: list[Path]
) -> None:
    workspace = await init(tmp_path / "ws")
    workspaces.append(workspace)
    assert (await duragent(workspace, "send", "hello")).returncode == 0
    policy = workspace / ".duragent" / "agents" / "assistant" / "policy.yaml"
    policy.write_text("mode: [ask\n")
    readyz = run_info(workspace)["url"] + "/readyz"
    await until(lambda: _get_json(readyz)["agents"].get("assistant"))

    done = await duragent(workspace, "send", "hello again")

    assert done.returncode == 0, done.stderr
    assert 'You wrote 2 words: "hello again"' in done.stdout
    assert "warning: agent 'assistant' answers as its last valid version" in done.stderr
    assert ".duragent/agents/assistant/policy.yaml:" in done.stderr

    policy.write_text("mode: ask\n")
    await until(lambda: not _get_json(readyz)["agents"])
    clean = await duragent(workspace, "send", "and now")
    assert clean.returncode == 0, clean.stderr
    assert "warning" not in clean.stderr


async def test_a_mistyped_key_in_policy_yaml_is_a_warning_where_you_talk_to_the_agent(
    tmp_path: Path, workspaces: list[Path]
) -> None:
    workspace = await init(tmp_path / "ws")
    workspaces.append(workspace)
    policy = workspace / ".duragent" / "agents" / "assistant" / "policy.yaml"
    policy.write_text("mode: ask\nalow: [read_file]\n")

    done = await duragent(workspace, "send", "hello")

    assert done.returncode == 0, done.stderr
    assert (
        "warning: .duragent/agents/assistant/policy.yaml:2:1: unknown key 'alow' is ignored "
        "(did you mean 'allow'?)" in done.stderr
    )
    ready = await asyncio.to_thread(_get_json, run_info(workspace)["url"] + "/readyz")
    assert ready["agents"] == {}
    assert ready["agent_warnings"]["assistant"][0].startswith(".duragent/agents/assistant/policy.yaml:2:1:")


async def test_a_server_a_client_starts_again_takes_its_last_port_if_free(
    tmp_path: Path, workspaces: list[Path]
) -> None:
    """A dashboard tab left open reconnects after `serve stop` and the next `send`; a port taken
    meanwhile does not stop the server from starting."""
    workspace = await init(tmp_path / "ws")
    workspaces.append(workspace)
    assert (await duragent(workspace, "send", "hi")).returncode == 0
    first_port = run_info(workspace)["port"]
    assert (await duragent(workspace, "serve", "stop")).returncode == 0

    assert (await duragent(workspace, "send", "hi again")).returncode == 0
    assert run_info(workspace)["port"] == first_port

    assert (await duragent(workspace, "serve", "stop")).returncode == 0
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # (the stopped server's TIME_WAITs)
        squatter.bind(("127.0.0.1", first_port))
        squatter.listen()
        sent = await duragent(workspace, "send", "and again")
        assert sent.returncode == 0, sent.stderr
        assert run_info(workspace)["port"] != first_port
