"""`duragent history`, `show`, `diff`, `revert`, `gc` on a real workspace and git repository."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from duragent.cli import build_app
from duragent.config import load_config
from duragent.errors import UsageError
from duragent.runtime.loop import Runtime, drain
from duragent.runtime.providers import ProviderPool
from duragent.scaffold import ProviderChoice, init_workspace
from duragent.sessions.log import SessionLog
from duragent.stores.base import MemoryEntry
from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from duragent.vcs.revisions import RevertConflict, RevertRefused
from duragent.workspace import Workspace

PERSON = "Test Person <person@example.test>"
DAY = "2026-11-26"


def run(*args: str) -> Result:
    return CliRunner().invoke(build_app(), list(args))


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    init_workspace(tmp_path / "ws")
    monkeypatch.chdir(tmp_path / "ws")
    return tmp_path / "ws"


@pytest.fixture
def data(root: Path) -> Path:
    return root / ".duragent"


async def agent_remembers(*texts: str, section: str = "fact") -> None:
    from datetime import date

    async with Workspace(load_config()) as workspace:
        for text in texts:
            await workspace.stores.memory.put(
                "assistant", MemoryEntry(text, section, day=date.fromisoformat(DAY))
            )


async def agent_talks() -> str:
    async with Workspace(load_config()) as workspace:
        log = await SessionLog.create(workspace.stores.sessions, agent="assistant")
        await log.append("user_message", {"content": "hi", "turn": 1})
        return log.session_id


def test_revert_of_a_memory_commit_is_a_new_commit_that_keeps_later_changes(data: Path) -> None:
    asyncio.run(agent_remembers("likes tea"))
    bad = git(data, "rev-parse", "HEAD").strip()
    asyncio.run(agent_remembers("likes coffee"))
    result = run("revert", bad, "--yes")
    assert result.exit_code == 0, result.output
    text = (data / "memory" / "assistant" / f"{DAY}.md").read_text()
    assert "likes tea" not in text
    assert "- likes coffee\n" in text
    log = git(data, "log", "-1", "--format=%an <%ae>|%s|%b")
    assert log.startswith(f"{PERSON}|revert: ")
    assert f"This reverts commit {bad}." in log
    assert bad in git(data, "rev-list", "HEAD")  # history is not rewritten


async def a_turn_where_the_agent_remembers(root: Path, fake_llm: FakeLLMServer, fact: str) -> str:
    """One real turn: the model calls the memory tool, then answers; returns the session id."""
    fake_llm.enqueue(
        tool_calls([("memory", {"action": "remember", "content": fact, "section": "preference"})]),
        text("Noted."),
    )
    env = {"OPENAI_API_KEY": "sk-test"}
    async with Workspace(load_config(), env=env) as workspace:
        providers = ProviderPool(env)
        runtime = Runtime(
            provider_for=providers.for_agent,
            memory=workspace.stores.memory,
            artifacts=workspace.stores.artifacts,
            on_change=workspace.record_change,
        )
        session = await SessionLog.create(workspace.stores.sessions, agent="assistant")
        try:
            await drain(runtime.run_turn(session, workspace.agents.get("assistant"), f"remember: {fact}"))
        finally:
            await providers.close()
        return session.session_id


@pytest.fixture
def openai_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_llm: FakeLLMServer) -> Path:
    root = tmp_path / "ws"
    init_workspace(root, provider=ProviderChoice("openai", "test-model", "test"))
    agent_yaml = root / ".duragent" / "agents" / "assistant" / "agent.yaml"
    model = "    name: test-model\n"
    agent_yaml.write_text(agent_yaml.read_text().replace(model, f"{model}    base_url: {fake_llm.url}\n", 1))
    monkeypatch.chdir(root)
    return root


async def test_what_an_agent_remembered_in_a_turn_is_its_own_commit_and_can_be_reverted(
    openai_root: Path, fake_llm: FakeLLMServer
) -> None:
    data = openai_root / ".duragent"
    await a_turn_where_the_agent_remembers(openai_root, fake_llm, "likes sencha")
    session_id = await a_turn_where_the_agent_remembers(openai_root, fake_llm, "likes genmaicha")
    daily = next((data / "memory" / "assistant").glob("20*.md"))
    memory_commits = git(data, "log", "--format=%H", "--", "memory/").split()
    remembered = memory_commits[0]
    assert git(data, "show", "--name-only", "--format=", remembered).split() == [
        f"memory/assistant/{daily.name}"
    ]
    events = data / "sessions" / session_id / "events.jsonl"
    log_before = events.read_text()
    assert git(data, "log", "-1", "--format=%s", "--", f"sessions/{session_id}").startswith(
        f"session {session_id[:12]}:"  # (the id cut to its time part)
    )

    result = await asyncio.to_thread(run, "revert", remembered, "--yes")

    assert result.exit_code == 0, result.output
    assert f"Reverted {remembered[:10]}" in result.output
    assert "likes genmaicha" not in daily.read_text()
    assert "- likes sencha" in daily.read_text()
    assert events.read_text() == log_before  # the conversation it was said in is untouched
    assert git(data, "status", "--porcelain", "--", "memory/") == ""
    assert git(data, "log", "-1", "--format=%s").startswith('revert: "memory assistant:')


def test_revert_of_a_commit_holding_memory_and_session_logs_reverts_the_memory_only(data: Path) -> None:
    session_id = asyncio.run(agent_talks())
    asyncio.run(agent_remembers("likes tea"))
    daily = data / "memory" / "assistant" / f"{DAY}.md"
    log = data / "sessions" / session_id / "events.jsonl"
    # a commit of both, as older versions (or a person) made them
    log.write_text(log.read_text() + log.read_text().splitlines()[-1] + "\n")
    daily.write_text(daily.read_text() + "- likes mate\n")
    git(data, "add", "-A")
    git(data, "commit", "-q", "-m", "both at once")
    mixed = git(data, "rev-parse", "HEAD").strip()
    log_before = log.read_text()

    result = run("revert", mixed, "--yes")

    assert result.exit_code == 0, result.output
    assert "likes mate" not in daily.read_text()
    assert "- likes tea" in daily.read_text()
    assert log.read_text() == log_before
    left = f"Left as they are (only memory and agent definitions are reverted): sessions/{session_id}/"
    assert left in result.output
    message = git(data, "log", "-1", "--format=%B")
    assert f"- sessions/{session_id}/events.jsonl" in message


def test_revert_without_yes_in_a_pipe_says_to_pass_yes_and_changes_nothing(data: Path) -> None:
    """As `session delete` does: not a question nobody can answer, then "Aborted!"."""
    asyncio.run(agent_remembers("likes tea"))
    bad = git(data, "rev-parse", "HEAD").strip()

    result = run("revert", bad)  # (the runner's input is not a terminal)

    assert isinstance(result.exception, UsageError)
    assert "refusing to revert without confirmation: pass --yes" in str(result.exception)
    assert "Continue?" not in result.output
    assert git(data, "rev-parse", "HEAD").strip() == bad
    assert "likes tea" in (data / "memory" / "assistant" / f"{DAY}.md").read_text()


def test_revert_refuses_a_commit_that_touches_session_logs(data: Path) -> None:
    asyncio.run(agent_talks())
    head = git(data, "rev-parse", "HEAD").strip()
    result = run("revert", head, "--yes")
    assert isinstance(result.exception, RevertRefused)
    assert "append-only" in str(result.exception)
    assert "duragent session fork" in str(result.exception)
    assert git(data, "rev-parse", "HEAD").strip() == head


def test_revert_refuses_when_later_edits_touch_the_same_lines(data: Path) -> None:
    asyncio.run(agent_remembers("likes tea"))
    bad = git(data, "rev-parse", "HEAD").strip()
    daily = data / "memory" / "assistant" / f"{DAY}.md"
    daily.write_text(daily.read_text().replace("likes tea", "likes green tea"))
    run("memory", "show")  # commits the person's edit
    result = run("revert", bad, "--yes")
    assert isinstance(result.exception, RevertConflict)
    assert "likes green tea" in daily.read_text()


def test_revert_refuses_to_commit_a_secret_the_committer_kept_out_of_git(data: Path) -> None:
    asyncio.run(agent_remembers("likes tea"))
    first = git(data, "rev-parse", "HEAD").strip()
    asyncio.run(agent_remembers("lives in Lisbon"))
    daily = data / "memory" / "assistant" / f"{DAY}.md"
    daily.write_text(daily.read_text() + "- my key is sk-proj-Ab3dEf6hIj9kLmNoPqRsTuVwXyZ123\n")
    run("memory", "show")  # the edit is refused by the commit screen: it stays on disk only

    result = run("revert", first, "--yes")

    assert isinstance(result.exception, RevertConflict)
    assert "would be committed holding a secret (API_KEY)" in str(result.exception)
    assert "sk-proj" not in git(data, "log", "-p", "--all")
    assert "likes tea" in daily.read_text()  # nothing written


def test_show_renders_a_memory_commit_as_bullets_per_section(data: Path) -> None:
    asyncio.run(agent_remembers("Chose Telegram", section="decision"))
    result = run("show", "HEAD")
    assert result.exit_code == 0, result.output
    assert f"memory/assistant/{DAY}.md (added)" in result.output
    assert "  ## Decisions Made\n  + Chose Telegram" in result.output
    assert "@@" not in result.output
    assert "@@" in run("show", "HEAD", "--raw").output
    shown = json.loads(run("show", "--json").output)
    assert shown["files"][0]["sections"] == [
        {"section": "decision", "added": ["Chose Telegram"], "removed": []}
    ]


def test_diff_shows_uncommitted_edits_and_changes_between_revisions(data: Path) -> None:
    asyncio.run(agent_remembers("likes tea"))
    first = git(data, "rev-parse", "HEAD").strip()
    daily = data / "memory" / "assistant" / f"{DAY}.md"
    daily.write_text(daily.read_text().replace("- likes tea\n", "- likes oolong\n\nA note in prose.\n"))
    result = run("diff")
    assert result.exit_code == 0, result.output
    assert "  ## Facts Stored\n  + likes oolong\n  - likes tea" in result.output
    assert "(other text)\n  + A note in prose." in result.output
    asyncio.run(agent_remembers("likes cake"))  # commits the edit (offline) then the agent's write
    between = json.loads(run("diff", first, "HEAD", "--json").output)
    assert [d["path"] for d in between] == [f"memory/assistant/{DAY}.md"]
    assert sorted(between[0]["sections"][0]["added"]) == ["likes cake", "likes oolong"]
    only = run("diff", first, "HEAD", "memory/world")
    assert only.output.strip() == "No changes."


def test_history_shows_a_persons_whole_name(data: Path) -> None:
    git(data, "config", "user.name", "Ada Augusta King-Noel, Countess of Lovelace")
    run("memory", "add", "Prefers short answers")
    asyncio.run(agent_talks())

    lines = run("history").output.splitlines()

    person = next(line for line in lines if "edit: memory/assistant/" in line)
    agent = next(line for line in lines if "session s_" in line)
    assert "  Ada Augusta King-Noel, Countess of Lovelace  edit: memory/assistant/" in person
    assert "person@example.test" not in person
    # one column: the subjects start at the same place
    assert agent.index("session s_") == person.index("edit: memory/")


def test_history_json_shape_and_author_and_memory_filters(data: Path) -> None:
    session_id = asyncio.run(agent_talks())
    asyncio.run(agent_remembers("likes tea"))
    run("memory", "add", "Prefers short answers", "--section", "preference")
    entries = json.loads(run("history", "--json").output)
    assert set(entries[0]) == {
        "sha",
        "when",
        "author",
        "author_kind",
        "subject",
        "kinds",
        "sessions",
        "agents",
        "files",
    }
    human = json.loads(run("history", "--author", "human", "--json").output)
    assert {e["author_kind"] for e in human} == {"human"}
    assert human[0]["subject"].startswith("edit: memory/assistant/")
    assert human[0]["kinds"] == ["edit"]
    assert human[0]["agents"] == ["assistant"]
    agent = json.loads(run("history", "--author", "agent", "--memory", "--json").output)
    assert [e["subject"] for e in agent] == [
        "memory assistant: 2026-11-26 facts +1",
        "init: workspace with agent assistant",
    ]
    memory = json.loads(run("history", "--memory", "--json").output)
    assert all(any(f.startswith("memory/") for f in e["files"]) for e in memory)
    assert not any(session_id in e["sessions"] for e in memory)
    sessions = json.loads(run("history", "--kind", "session", "--json").output)
    assert sessions
    assert all("session" in e["kinds"] for e in sessions)


def test_gc_reports_sizes_before_and_after(data: Path) -> None:
    asyncio.run(agent_remembers("likes tea"))
    report = json.loads(run("gc", "--json").output)
    assert report["git_after"] > 0
    assert report["tracked"] > 0
    assert "ratio" in run("gc").output


def test_revert_waits_for_the_memory_lock_and_keeps_a_write_made_while_it_waited(data: Path) -> None:
    import threading

    from duragent.stores.filesystem.locks import memory_file_lock

    asyncio.run(agent_remembers("likes tea"))
    bad = git(data, "rev-parse", "HEAD").strip()
    daily = data / "memory" / "assistant" / f"{DAY}.md"
    results: list[Result] = []
    with memory_file_lock(data / "memory", daily):  # a store writing the file right now
        reverting = threading.Thread(target=lambda: results.append(run("revert", bad, "--yes")))
        reverting.start()
        reverting.join(0.5)
        assert reverting.is_alive(), "revert did not wait for the memory store's lock"
        daily.write_text(daily.read_text() + "- written while revert waited\n")
    reverting.join(30)
    assert results[0].exit_code == 0, results[0].output
    text = daily.read_text()
    assert "likes tea" not in text
    assert "- written while revert waited\n" in text


def test_history_names_the_kinds_it_knows_when_given_another(data: Path) -> None:
    result = run("history", "--kind", "bogus")

    assert isinstance(result.exception, UsageError)
    assert str(result.exception) == (
        "invalid --kind 'bogus': use one of session, memory, artifact, agent, edit, schedule, process"
    )


def test_revert_keeps_windows_line_endings_and_refuses_a_binary_file(data: Path) -> None:
    daily = data / "memory" / "assistant" / f"{DAY}.md"
    daily.parent.mkdir(parents=True, exist_ok=True)
    daily.write_bytes(b"# 2026-11-26\r\n\r\n## Facts Stored\r\n- likes tea\r\n")
    icon = data / "agents" / "assistant" / "icon.png"
    icon.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    run("memory", "show")  # commits both as the person's edits
    daily.write_bytes(daily.read_bytes() + b"- likes coffee\r\n")
    run("memory", "show")
    added = git(data, "rev-parse", "HEAD").strip()
    icon.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(255, -1, -1)))
    run("memory", "show")
    changed_icon = git(data, "rev-parse", "HEAD").strip()

    reverted = run("revert", added, "--yes")
    binary = run("revert", changed_icon, "--yes")

    assert reverted.exit_code == 0, reverted.output
    assert daily.read_bytes() == b"# 2026-11-26\r\n\r\n## Facts Stored\r\n- likes tea\r\n"
    assert isinstance(binary.exception, RevertRefused)
    assert "agents/assistant/icon.png is not text" in str(binary.exception)


def test_the_subject_of_a_revert_of_a_long_subject_stays_short_and_names_the_commit(data: Path) -> None:
    asyncio.run(agent_remembers("likes tea"))
    long_subject = "memory assistant: " + "; ".join(f"2026-11-{day} café notes +1" for day in range(10, 16))
    git(data, "commit", "-q", "--amend", "-m", long_subject)  # as a long-lived subject would read
    first = git(data, "rev-parse", "HEAD").strip()

    assert run("revert", first, "--yes").exit_code == 0
    reverting_the_revert = git(data, "rev-parse", "HEAD").strip()
    assert run("revert", reverting_the_revert, "--yes").exit_code == 0

    for subject in git(data, "log", "-2", "--format=%s").splitlines():
        assert len(subject) <= 72, subject
        assert subject.startswith('revert: "'), subject
        assert subject.endswith('…"'), subject
    bodies = git(data, "log", "-2", "--format=%b")
    assert f"This reverts commit {first}" in bodies
    assert long_subject in bodies
