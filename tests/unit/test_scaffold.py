"""The workspace scaffold: provider detection, the files init writes, and its single git commit."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from duragent.agents.loader import load_agent
from duragent.config import load_config
from duragent.errors import InvalidName, UsageError
from duragent.scaffold import ProviderChoice, detect_provider, init_workspace, write_agent

DEMO = ProviderChoice("demo", "demo", "no API key found")
OPENAI = ProviderChoice("openai", "gpt-4o-mini", "OPENAI_API_KEY is set")


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound (so nobody else takes it) but not listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def fake_ollama() -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 answering GET /api/tags like Ollama does."""

    class Tags(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"models": [{"name": "qwen2.5:7b"}, {"name": "llama3.2:latest"}]}).encode()
            self.send_response(200 if self.path == "/api/tags" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Tags)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def test_openai_key_wins_over_every_other_provider(closed_port: int) -> None:
    env = {"OPENAI_API_KEY": "sk-a", "ANTHROPIC_API_KEY": "sk-b", "OPENROUTER_API_KEY": "sk-c"}
    choice = detect_provider(env, ollama_url=f"http://127.0.0.1:{closed_port}")
    assert choice == ProviderChoice("openai", "gpt-4o-mini", "OPENAI_API_KEY is set")


def test_anthropic_then_openrouter_follow_in_detection_order(closed_port: int) -> None:
    ollama = f"http://127.0.0.1:{closed_port}"
    anthropic = detect_provider({"ANTHROPIC_API_KEY": "x", "OPENROUTER_API_KEY": "y"}, ollama_url=ollama)
    openrouter = detect_provider({"OPENROUTER_API_KEY": "y"}, ollama_url=ollama)
    assert (anthropic.provider, anthropic.model) == ("anthropic", "claude-sonnet-4-20250514")
    assert (openrouter.provider, openrouter.model) == ("openrouter", "anthropic/claude-sonnet-4")


def test_an_empty_key_variable_does_not_count_as_set(closed_port: int) -> None:
    choice = detect_provider({"OPENAI_API_KEY": ""}, ollama_url=f"http://127.0.0.1:{closed_port}")
    assert choice.provider == "demo"


def test_without_keys_or_ollama_the_offline_demo_is_chosen_quickly(closed_port: int) -> None:
    started = time.monotonic()
    choice = detect_provider({}, ollama_url=f"http://127.0.0.1:{closed_port}")
    assert choice == ProviderChoice("demo", "demo", "no API key found")
    assert time.monotonic() - started < 1.0


def test_a_local_ollama_is_chosen_with_a_model_it_has(fake_ollama: str) -> None:
    choice = detect_provider({}, ollama_url=fake_ollama)
    assert choice.provider == "ollama"
    assert choice.model == "llama3.2:latest"
    assert choice.reason == f"Ollama answers on {fake_ollama.removeprefix('http://')}"


def test_an_api_key_is_preferred_to_a_running_ollama(fake_ollama: str) -> None:
    assert detect_provider({"OPENROUTER_API_KEY": "k"}, ollama_url=fake_ollama).provider == "openrouter"


def test_written_agent_loads_and_names_the_key_variable_not_its_value(tmp_path: Path) -> None:
    write_agent(tmp_path, "helper", provider="openai", model="gpt-4o-mini")
    agent, warnings = load_agent(tmp_path / "helper", {})
    assert warnings == []
    assert agent.name == "helper"
    assert agent.spec.model.provider == "openai"
    assert agent.spec.model.key_variable == "OPENAI_API_KEY"
    assert agent.spec.memory is not None
    assert agent.spec.memory.enabled
    assert agent.spec.tools.builtin == ["memory", "notify_user"]
    assert agent.spec.session.on_disconnect == "pause"
    assert "{{date}}" in agent.system_prompt, "the runtime fills {{date}} on every turn"
    assert "helper" in agent.soul
    first_line = (tmp_path / "helper" / "agent.yaml").read_text().splitlines()[0]
    assert first_line == "# yaml-language-server: $schema=../../schemas/agent.schema.json"


def test_model_names_with_colons_survive_the_yaml_round_trip(tmp_path: Path) -> None:
    write_agent(tmp_path, "local", provider="ollama", model="qwen2.5:7b")
    data = yaml.safe_load((tmp_path / "local" / "agent.yaml").read_text())
    assert data["spec"]["model"] == {"provider": "ollama", "name": "qwen2.5:7b"}


def test_unknown_provider_and_unsafe_agent_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown provider 'gpt'"):
        write_agent(tmp_path, "a", provider="gpt", model="x")
    with pytest.raises(InvalidName):
        init_workspace(tmp_path / "ws", agent="../escape", provider=DEMO)
    assert not (tmp_path / "ws").exists(), "nothing is written for a refused name"


def test_init_writes_the_documented_workspace(tmp_path: Path) -> None:
    result = init_workspace(tmp_path, agent="assistant", provider=DEMO)
    data = tmp_path / ".duragent"
    for path in (
        "agents/assistant/agent.yaml",
        "agents/assistant/SOUL.md",
        "agents/assistant/SYSTEM_PROMPT.md",
        "agents/assistant/INSTRUCTIONS.md",
        "memory/assistant/MEMORY.md",
        "sessions/.gitkeep",
        "artifacts/.gitkeep",
        ".gitignore",
    ):
        assert (data / path).is_file(), path
    assert {f.action for f in result.files} == {"created"}
    assert result.data_dir == data
    ignored = (data / ".gitignore").read_text().splitlines()
    for pattern in (
        "logs/",
        "run/",
        "*.lock",
        ".locks/",
        "*.tmp",
        "*.corrupt-*",
        "clients/",
        ".env",
        "*.pid",
    ):
        assert pattern in ignored


def test_init_config_is_valid_and_points_at_the_data_dir(tmp_path: Path) -> None:
    init_workspace(tmp_path, provider=DEMO)
    text = (tmp_path / "duragent.yaml").read_text()
    assert text.splitlines()[0] == "# yaml-language-server: $schema=.duragent/schemas/config.schema.json"
    assert "${DURAGENT_API_TOKEN:-}" in text
    config = load_config(tmp_path / "duragent.yaml", env={})
    assert config.warnings == []
    assert config.data_path == tmp_path / ".duragent"
    assert config.service_path("session") == tmp_path / ".duragent" / "sessions"


def test_data_dir_becomes_a_repo_with_one_commit_by_duragent(tmp_path: Path) -> None:
    result = init_workspace(tmp_path, agent="assistant", provider=DEMO)
    data = tmp_path / ".duragent"
    assert result.git_initialised
    log = git(data, "log", "--format=%H|%an <%ae>|%cn <%ce>|%s").splitlines()
    assert log == [
        f"{result.commit}|Duragent <duragent@localhost>|Duragent <duragent@localhost>"
        "|init: workspace with agent assistant"
    ]
    assert git(data, "status", "--porcelain") == "", "everything init wrote is committed"
    assert "agents/assistant/agent.yaml" in git(data, "ls-files")
    # what the server would otherwise commit on its first start, a history's odd second entry
    assert "processes/.gitignore" in git(data, "ls-files")


def test_second_init_changes_nothing_and_makes_no_commit(tmp_path: Path) -> None:
    init_workspace(tmp_path, provider=DEMO)
    soul = tmp_path / ".duragent" / "agents" / "assistant" / "SOUL.md"
    soul.write_text("My own soul.\n")
    again = init_workspace(tmp_path, provider=OPENAI)
    assert {f.action for f in again.files} == {"skipped"}
    assert again.commit is None
    assert not again.git_initialised
    assert soul.read_text() == "My own soul.\n"
    assert len(git(tmp_path / ".duragent", "log", "--oneline").splitlines()) == 1
    assert "provider: demo" in (soul.parent / "agent.yaml").read_text()


def test_force_rewrites_template_files_after_saving_backups(tmp_path: Path) -> None:
    init_workspace(tmp_path, provider=DEMO)
    soul = tmp_path / ".duragent" / "agents" / "assistant" / "SOUL.md"
    soul.write_text("My own soul.\n")
    result = init_workspace(tmp_path, provider=DEMO, force=True)
    by_path = {f.path: f for f in result.files}
    assert by_path[soul].action == "overwritten"
    assert by_path[soul].backup == soul.with_name("SOUL.md.bak")
    assert soul.with_name("SOUL.md.bak").read_text() == "My own soul.\n"
    assert "calm, practical assistant" in soul.read_text()
    assert (tmp_path / "duragent.yaml.bak").is_file()
    init_workspace(tmp_path, provider=DEMO, force=True)
    assert soul.with_name("SOUL.md.bak.1").is_file(), "an earlier backup is never replaced"
    assert "SOUL.md.bak" not in git(tmp_path / ".duragent", "ls-files"), "backups stay out of git"


def test_init_in_an_existing_repo_commits_only_what_it_wrote(tmp_path: Path) -> None:
    init_workspace(tmp_path, provider=DEMO)
    data = tmp_path / ".duragent"
    (data / "notes.md").write_text("work in progress\n")
    result = init_workspace(tmp_path, agent="second", provider=DEMO)
    assert not result.git_initialised
    assert git(data, "log", "-1", "--format=%s").strip() == "init: workspace with agent second"
    assert git(data, "status", "--porcelain").strip() == "?? notes.md"


def test_no_git_leaves_the_data_dir_without_a_repository(tmp_path: Path) -> None:
    result = init_workspace(tmp_path, provider=DEMO, git=False)
    assert not (tmp_path / ".duragent" / ".git").exists()
    assert result.commit is None
    assert not result.git_initialised


def test_init_inside_another_repository_still_makes_the_data_dir_its_own(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    result = init_workspace(tmp_path, provider=DEMO)
    assert result.git_initialised
    assert git(tmp_path / ".duragent", "rev-parse", "--show-toplevel").strip() == str(tmp_path / ".duragent")
