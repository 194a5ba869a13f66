"""A person edits memory in their editor while Duragent runs (or not): real git, watchdog, processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Sequence
from datetime import date, timedelta
from pathlib import Path

import pytest
from aiohttp import web

from duragent.client.runfile import write_run_info
from duragent.config import load_config
from duragent.runtime.loop import Runtime, drain
from duragent.runtime.providers import ProviderPool
from duragent.scaffold import init_workspace
from duragent.server.app import create_app
from duragent.sessions.log import SessionLog
from duragent.stores.base import MemoryEntry, utcnow
from duragent.testing.fake_llm import FakeLLMServer, text
from duragent.vcs.repo import GitRepo
from duragent.vcs.watch import HumanEditWatcher
from duragent.workspace import Workspace

pytest_plugins = ["duragent.testing.pytest_plugin"]

DURAGENT = Path(sys.executable).parent / "duragent"
PERSON = "Test Person <person@example.test>"
AGENT = "Duragent <duragent@localhost>"

HELPER_YAML = """\
apiVersion: duragent/v1alpha1
kind: Agent
metadata:
  name: helper
spec:
  model:
    provider: openai
    name: gpt-test
    base_url: {url}
  system_prompt: You are a test agent.
  memory: {{enabled: true}}
  tools:
    builtin: [memory]
    policy: {{mode: allow}}
"""

# An editor that saves like vim and VS Code: probe file, swap file, temp file + rename.
EDITOR_SCRIPT = textwrap.dedent(
    """
    import os, sys
    path = sys.argv[1]
    folder = os.path.dirname(path)
    name = os.path.basename(path)
    probe = os.path.join(folder, "4913")
    open(probe, "w").close(); os.unlink(probe)
    swap = os.path.join(folder, "." + name + ".swp")
    open(swap, "w").write("swap")
    text = open(path).read().replace("likes green tea", "likes oolong tea (edited by hand)")
    temp = os.path.join(folder, "." + name + ".tmp-save")
    with open(temp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)
    os.unlink(swap)
    """
)


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout


def authors_and_subjects(data: Path) -> list[tuple[str, str]]:
    lines = git(data, "log", "--format=%an <%ae>\x1f%s").splitlines()
    return [(author, subject) for author, subject in (line.split("\x1f", 1) for line in lines)]


def human_commits(data: Path) -> list[str]:
    return [subject for author, subject in authors_and_subjects(data) if author == PERSON]


async def wait_for(condition: object, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    init_workspace(tmp_path / "ws")
    config = tmp_path / "ws" / "duragent.yaml"
    config.write_text(config.read_text() + "\ngit:\n  commit_debounce: 50ms\n  max_commit_delay: 500ms\n")
    return tmp_path / "ws"


@pytest.fixture
def data(root: Path) -> Path:
    return root / ".duragent"


@pytest.fixture
async def workspace(root: Path, fake_llm: FakeLLMServer) -> AsyncIterator[Workspace]:
    helper = root / ".duragent" / "agents" / "helper"
    helper.mkdir(parents=True)
    (helper / "agent.yaml").write_text(HELPER_YAML.format(url=fake_llm.url))
    opened = Workspace(load_config(root / "duragent.yaml"), env={"OPENAI_API_KEY": "sk-test"})
    opened.commit_offline_edits()  # the new agent folder: a person's edit made before anything ran
    yield opened
    await opened.close()


async def test_an_editor_save_is_one_human_commit_and_the_next_turn_uses_the_edited_text(
    workspace: Workspace, data: Path, fake_llm: FakeLLMServer
) -> None:
    store = workspace.stores.memory
    await store.put("helper", MemoryEntry("likes green tea", section="preference"))
    assert workspace.committer is not None
    workspace.committer.flush()
    daily = data / "memory" / "helper" / f"{utcnow().date().isoformat()}.md"
    before = len(human_commits(data))

    watcher = HumanEditWatcher(workspace, debounce=0.3)
    await watcher.start()
    try:
        editor = await asyncio.create_subprocess_exec(sys.executable, "-c", EDITOR_SCRIPT, str(daily))
        assert await editor.wait() == 0
        await wait_for(lambda: len(human_commits(data)) > before)
        await asyncio.sleep(0.8)  # a second commit for the same save burst would have landed by now
        new = human_commits(data)[: len(human_commits(data)) - before]
        assert new == [f"edit: memory/helper/{daily.name}"]
        message = git(data, "log", "-1", "--format=%B", f"--author={PERSON}")
        assert "Duragent-Kind: edit" in message
        assert "Duragent-Agent: helper" in message
        assert git(data, "status", "--porcelain", "--", "memory").strip() == ""

        fake_llm.enqueue(text("Noted."))
        agent = workspace.agents.get("helper")
        session = await SessionLog.create(workspace.stores.sessions, agent="helper")
        pool = ProviderPool({"OPENAI_API_KEY": "sk-test"})
        runtime = Runtime(provider_for=pool.for_agent, memory=store)
        try:
            await drain(runtime.run_turn(session, agent, "what tea do I like?"))
        finally:
            await pool.close()
        system = fake_llm.requests[-1].body["messages"][0]["content"]
        assert "likes oolong tea (edited by hand)" in system
        assert "likes green tea" not in system
    finally:
        await watcher.stop()
    workspace.committer.flush()
    assert len(human_commits(data)) == before + 1


async def test_the_agents_own_memory_writes_are_not_committed_as_a_persons_edits(
    workspace: Workspace, data: Path
) -> None:
    before = len(human_commits(data))
    watcher = HumanEditWatcher(workspace, debounce=0.1)
    await watcher.start()
    try:
        for number in range(5):
            await workspace.stores.memory.put("helper", MemoryEntry(f"agent note {number}"))
            await workspace.stores.memory.write_long_term("helper", f"# Long-term\n\n- summary {number}\n")
            await asyncio.sleep(0.03)
        await asyncio.sleep(0.6)
    finally:
        await watcher.stop()
    assert workspace.committer is not None
    workspace.committer.flush()
    assert watcher.commits == []
    assert len(human_commits(data)) == before
    authors = set(git(data, "log", "--format=%an <%ae>", "--", "memory/helper").splitlines())
    assert authors == {AGENT}
    assert git(data, "status", "--porcelain", "--", "memory").strip() == ""


async def test_the_watcher_looks_at_neither_reads_nor_the_runtimes_own_writes(
    workspace: Workspace, data: Path, fake_llm: FakeLLMServer
) -> None:
    memory = data / "memory" / "helper"
    await workspace.stores.memory.write_long_term("helper", "# Long-term\n\n- likes tea\n")
    # The store notes a write a moment after the file is in place. A debounce shorter than a
    # loaded machine's scheduling delay lets the watcher look in that moment; it then finds the
    # file pending with the agent's committer and leaves it (attribution holds), but this test is
    # about the watcher not looking at all.
    watcher = HumanEditWatcher(workspace, debounce=1.0)
    await watcher.start()
    try:
        # a turn reads MEMORY.md and the day's files for its context
        fake_llm.enqueue(text("Noted."))
        pool = ProviderPool({"OPENAI_API_KEY": "sk-test"})
        runtime = Runtime(provider_for=pool.for_agent, memory=workspace.stores.memory)
        session = await SessionLog.create(workspace.stores.sessions, agent="helper")
        try:
            await drain(runtime.run_turn(session, workspace.agents.get("helper"), "hi"))
        finally:
            await pool.close()
        for _ in range(20):
            (memory / "MEMORY.md").read_text()
        for number in range(3):
            await workspace.stores.memory.put("helper", MemoryEntry(f"agent note {number}"))
            await workspace.stores.memory.write_long_term("helper", f"# Long-term\n\n- summary {number}\n")
        # a person's edit afterwards: its events come after all of the above, in order
        (memory / "2026-11-19.md").write_text("# 2026-11-19\n\n## Facts Stored\n- by hand\n")
        await wait_for(lambda: watcher.commits)
    finally:
        await watcher.stop()
    assert list(watcher.examined) == ["memory/helper/2026-11-19.md"]
    assert human_commits(data)[0] == "edit: memory/helper/2026-11-19.md"


async def test_when_inotify_is_used_up_edits_are_still_committed_by_polling(
    workspace: Workspace, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    import watchdog.observers

    class InotifyUsedUp(watchdog.observers.Observer):  # type: ignore[misc,valid-type]
        def start(self) -> None:
            raise OSError(errno.EMFILE, "inotify instance limit reached")

    monkeypatch.setattr(watchdog.observers, "Observer", InotifyUsedUp)
    watcher = HumanEditWatcher(workspace, debounce=0.05)
    await watcher.start()
    try:
        (data / "memory" / "helper").mkdir(exist_ok=True)
        (data / "memory" / "helper" / "2026-11-17.md").write_text("# 2026-11-17\n\n- polled\n")
        await wait_for(lambda: watcher.commits, within=20)
    finally:
        await watcher.stop()
    assert human_commits(data)[0] == "edit: memory/helper/2026-11-17.md"


async def test_an_edit_commit_names_only_the_files_that_changed(workspace: Workspace, data: Path) -> None:
    edits = workspace.human_edits
    assert edits is not None
    daily = data / "memory" / "assistant" / "2026-11-18.md"
    daily.write_text("# 2026-11-18\n\n## Facts Stored\n- first\n")
    edits.commit(["memory/assistant/2026-11-18.md"])
    daily.write_text(daily.read_text() + "- second\n")
    touched = [
        "memory/assistant/2026-11-18.md",
        "agents/assistant/SOUL.md",
        "agents/assistant/agent.yaml",
        "agents/helper/agent.yaml",
    ]  # an editor opened them all, one changed

    result = edits.commit(touched)

    assert result.files == ("memory/assistant/2026-11-18.md",)
    assert human_commits(data)[0] == "edit: memory/assistant/2026-11-18.md"
    assert git(data, "show", "--name-only", "--format=", "HEAD").split() == ["memory/assistant/2026-11-18.md"]


async def test_a_save_whose_events_the_stopping_watcher_never_got_is_committed_as_the_persons(
    workspace: Workspace, data: Path
) -> None:
    daily = data / "memory" / "helper" / "2026-11-19.md"
    await workspace.stores.memory.put("helper", MemoryEntry("agent note", day=date(2026, 11, 19)))
    assert workspace.committer is not None
    workspace.committer.flush()
    watcher = HumanEditWatcher(workspace, debounce=30.0)
    await watcher.start()
    # the save lands as the server stops, before the observer hands its events over
    watcher._from_thread = lambda relative: None  # type: ignore[method-assign]
    daily.write_text(daily.read_text() + "- saved by hand just before the stop\n")

    await watcher.stop()

    assert git(data, "status", "--porcelain", "--", "memory").strip() == ""
    assert human_commits(data)[0] == "edit: memory/helper/2026-11-19.md"


async def test_edits_whose_events_an_inotify_overflow_lost_are_committed_as_the_persons(
    workspace: Workspace, data: Path
) -> None:
    from watchdog.events import EventsLostEvent

    daily = data / "memory" / "helper" / "2026-11-21.md"
    daily.parent.mkdir()
    watcher = HumanEditWatcher(workspace, debounce=0.1)
    await watcher.start()
    try:
        assert watcher._observer is not None
        emitters = list(watcher._observer.emitters)
        # the kernel's queue overflows: the events of what happens now never reach the watcher
        lost: list[str] = []
        for emitter in emitters:
            emitter.queue_event = lambda event: lost.extend(
                os.fsdecode(path) for path in (event.src_path, getattr(event, "dest_path", ""))
            )
        daily.write_text("# 2026-11-21\n\n## Facts Stored\n- saved by hand during the overflow\n")
        await wait_for(lambda: str(daily) in lost)
        for emitter in emitters:
            del emitter.queue_event
            # what watchdog queues once it has rebuilt its watches, one per watched folder
            emitter.queue_event(EventsLostEvent(emitter.watch.path, is_directory=True))
        await wait_for(lambda: watcher.commits)
    finally:
        await watcher.stop()
    assert len(watcher.commits) == 1
    assert human_commits(data)[0] == "edit: memory/helper/2026-11-21.md"
    assert git(data, "show", "--name-only", "--format=", watcher.commits[0]).split() == [
        "memory/helper/2026-11-21.md"
    ]


async def test_a_look_at_git_that_fails_after_lost_events_still_lets_the_stop_commit_the_edit(
    workspace: Workspace, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from watchdog.events import EventsLostEvent

    daily = data / "memory" / "helper" / "2026-11-22.md"
    daily.parent.mkdir()
    watcher = HumanEditWatcher(workspace, debounce=60)
    await watcher.start()
    assert watcher._observer is not None
    assert watcher._committer is not None
    pending = watcher._committer.pending
    failures: list[str] = []

    def git_cannot_start() -> list[str]:
        failures.append("EMFILE")
        raise OSError(24, "Too many open files")  # (as starting git fails in an event storm)

    monkeypatch.setattr(watcher._committer, "pending", git_cannot_start)
    emitter = next(iter(watcher._observer.emitters))
    emitter.queue_event(EventsLostEvent(emitter.watch.path, is_directory=True))
    await wait_for(lambda: failures)
    monkeypatch.setattr(watcher._committer, "pending", pending)
    daily.write_text("# 2026-11-22\n\n## Facts Stored\n- saved by hand\n")
    await watcher.stop()  # (raises nothing, and sweeps)
    assert human_commits(data)[0] == "edit: memory/helper/2026-11-22.md"


async def test_edits_made_while_nothing_ran_are_committed_by_the_next_command(root: Path, data: Path) -> None:
    daily = data / "memory" / "assistant" / "2026-11-20.md"
    daily.write_text("# 2026-11-20\n\n## Facts Stored\n- written in vim while the server was down\n")
    (data / "agents" / "assistant" / "SOUL.md").write_text("You are terse.\n")
    command = [str(DURAGENT), "memory", "show", "--json"]
    done = await asyncio.to_thread(
        subprocess.run, command, cwd=root, capture_output=True, text=True, check=True
    )
    assert "assistant" in done.stdout
    author, subject = authors_and_subjects(data)[0]
    assert author == PERSON
    assert subject == "edit: 2 files"
    files = git(data, "show", "--name-only", "--format=", "HEAD").split()
    assert sorted(files) == ["agents/assistant/SOUL.md", "memory/assistant/2026-11-20.md"]
    assert git(data, "status", "--porcelain").strip() == ""


async def test_a_server_start_commits_edits_made_while_nothing_ran_as_the_persons_after_one_look(
    root: Path, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    daily = data / "memory" / "assistant" / "2026-11-20.md"
    daily.write_text("# 2026-11-20\n\n## Facts Stored\n- written in vim while the server was down\n")
    looked_under: list[list[str]] = []
    changed_paths = GitRepo.changed_paths

    def looking(repo: GitRepo, under: Sequence[Path] = ()) -> list[str]:
        looked_under.append([repo.relative(folder) for folder in under])
        return changed_paths(repo, under)

    monkeypatch.setattr(GitRepo, "changed_paths", looking)
    app = create_app(load_config(root / "duragent.yaml"), env={"OPENAI_API_KEY": "sk-test"})
    runner = web.AppRunner(app)
    await runner.setup()  # every resource open: what /readyz answers for
    try:
        assert authors_and_subjects(data)[0] == (PERSON, "edit: memory/assistant/2026-11-20.md")
        # the watcher's look at the editable folders serves the committer started after it too
        assert [folders for folders in looked_under if "memory" in folders] == [
            ["memory", "agents", "skills", "tools"]
        ]
    finally:
        await runner.cleanup()


async def test_uncommitted_agent_writes_left_by_a_crash_are_recovered_as_the_agents(
    root: Path, data: Path
) -> None:
    config = load_config(root / "duragent.yaml")
    crashed = Workspace(config)
    assert crashed.agent_writes is not None
    daily = data / "memory" / "assistant" / "2026-11-21.md"
    daily.write_text("# 2026-11-21\n\n## Facts Stored\n- the agent wrote this\n")
    crashed.agent_writes.record([daily])  # the store's notification, then the process died

    assert Workspace(config).commit_offline_edits() is None
    author, subject = authors_and_subjects(data)[0]
    assert author == AGENT
    assert subject.startswith("memory: 1 uncommitted file recovered")


def test_a_command_leaves_the_running_servers_uncommitted_writes_to_that_server(
    root: Path, data: Path
) -> None:
    """Within its commit delay a server's agent writes are uncommitted; a command run then
    committed them as "recovered", and the server committed them again over the command's work."""
    config = load_config(root / "duragent.yaml")
    server = Workspace(config)
    assert server.agent_writes is not None
    daily = data / "memory" / "assistant" / "2026-11-21.md"
    daily.write_text("# 2026-11-21\n\n## Facts Stored\n- the agent wrote this\n")
    server.agent_writes.record([daily])
    soul = data / "agents" / "assistant" / "SOUL.md"
    soul.write_text(soul.read_text() + "\nBe brief.\n")  # the person's own edit
    serving = subprocess.Popen(["sleep", "60"])  # stands for the server's process
    try:
        write_run_info(data, {"pid": serving.pid, "url": "http://127.0.0.1:9"})

        Workspace(config).commit_offline_edits()
    finally:
        serving.kill()
        serving.wait()

    assert [author for author, _ in authors_and_subjects(data)[:1]] == [PERSON]
    assert git(data, "status", "--porcelain").strip() == "?? memory/assistant/2026-11-21.md"


@pytest.mark.slow
async def test_a_person_and_the_agent_writing_the_same_file_at_once_both_survive(
    root: Path, data: Path
) -> None:
    async with Workspace(load_config(root / "duragent.yaml")) as workspace:
        # two people's `duragent memory add` (which lock the file like the store does) at once
        people = [
            await asyncio.create_subprocess_exec(str(DURAGENT), "memory", "add", f"person note {n}", cwd=root)
            for n in range(2)
        ]
        count = 0
        while any(p.returncode is None for p in people) or count < 20:
            await workspace.stores.memory.put("assistant", MemoryEntry(f"agent note {count}"))
            count += 1
            await asyncio.sleep(0.01)
        assert [await p.wait() for p in people] == [0, 0]
    daily = (data / "memory" / "assistant" / f"{utcnow().date().isoformat()}.md").read_text()
    for n in range(2):
        assert f"- person note {n}\n" in daily
    for n in range(count):
        assert f"- agent note {n}\n" in daily
    # Both people's notes are in the history. Who a line is attributed to is not guaranteed
    # here: when the agent's committer stages the file between a person's write and their
    # commit, the person's line goes into the agent's commit.
    history = git(data, "log", "-p", "--format=%s")
    for n in range(2):
        assert f"+- person note {n}" in history


async def test_remember_lands_in_its_section_and_reflect_merges_days_in_one_commit(
    root: Path, data: Path
) -> None:
    async with Workspace(load_config(root / "duragent.yaml")) as workspace:
        agent = workspace.agents.get("assistant")
        pool = ProviderPool({})
        runtime = Runtime(provider_for=pool.for_agent, memory=workspace.stores.memory)
        session = await SessionLog.create(workspace.stores.sessions, agent="assistant")
        try:
            await drain(runtime.run_turn(session, agent, "remember the launch is on Friday"))
            yesterday = utcnow().date() - timedelta(days=1)
            await workspace.stores.memory.put(
                "assistant", MemoryEntry("use Telegram", "decision", day=yesterday)
            )
            assert workspace.committer is not None
            workspace.committer.flush()
            today = data / "memory" / "assistant" / f"{utcnow().date().isoformat()}.md"
            assert "## Facts Stored\n- the launch is on Friday\n" in today.read_text()
            assert authors_and_subjects(data)[0][0] == AGENT
            before = git(data, "rev-parse", "HEAD").strip()

            await drain(runtime.run_turn(session, agent, "reflect"))
            workspace.committer.flush()
        finally:
            await pool.close()
    long_term = (data / "memory" / "assistant" / "MEMORY.md").read_text()
    assert "## Decisions Made\n- use Telegram\n" in long_term
    assert "## Facts Stored\n- the launch is on Friday\n" in long_term
    touching = git(data, "log", "--format=%an", f"{before}..HEAD", "--", "memory/assistant/MEMORY.md")
    assert touching.split() == ["Duragent"]


async def test_the_demos_reflect_keeps_what_a_person_wrote_in_memory_md_outside_its_sections(
    root: Path, data: Path
) -> None:
    long_term = data / "memory" / "assistant" / "MEMORY.md"
    long_term.write_text(
        "# What I know about Ada\n\nShe runs the bakery; ask before ordering flour.\n"
        "- Her birthday is May 3\n\n## Facts Stored\n- Prefers rye\n"
    )
    async with Workspace(load_config(root / "duragent.yaml")) as workspace:
        agent = workspace.agents.get("assistant")
        pool = ProviderPool({})
        runtime = Runtime(provider_for=pool.for_agent, memory=workspace.stores.memory)
        session = await SessionLog.create(workspace.stores.sessions, agent="assistant")
        try:
            await drain(runtime.run_turn(session, agent, "remember the oven is fixed"))
            await drain(runtime.run_turn(session, agent, "reflect"))
        finally:
            await pool.close()

    assert long_term.read_text() == (
        "# What I know about Ada\n\nShe runs the bakery; ask before ordering flour.\n"
        "- Her birthday is May 3\n\n## Facts Stored\n- Prefers rye\n- the oven is fixed\n"
    )


def added_lines_by_author(data: Path, path: str) -> dict[str, str]:
    """Each line added to `path` in its history -> the author of the commit that added it."""
    out = git(data, "log", "--reverse", "--format=\x1e%an <%ae>", "-p", "--", path)
    authors: dict[str, str] = {}
    for commit in out.split("\x1e")[1:]:
        author, _, patch = commit.partition("\n")
        for line in patch.splitlines():
            if line.startswith("+") and not line.startswith("+++"):
                authors.setdefault(line[1:], author)
    return authors


async def test_a_persons_appended_lines_are_committed_as_theirs_while_the_agent_writes(
    workspace: Workspace, data: Path
) -> None:
    watcher = HumanEditWatcher(workspace, debounce=0.1)
    await watcher.start()
    day = utcnow().date()
    path = data / "memory" / "helper" / f"{day.isoformat()}.md"
    try:
        await workspace.stores.memory.put("helper", MemoryEntry("agent 0", day=day))
        person = await asyncio.create_subprocess_exec(
            "bash", "-c", f'for i in $(seq 1 20); do echo "- person $i" >> "{path}"; sleep 0.02; done'
        )
        count = 1
        while person.returncode is None or count < 10:
            await workspace.stores.memory.put("helper", MemoryEntry(f"agent {count}", day=day))
            count += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(person.wait(), 0.03)
        assert await person.wait() == 0
    finally:
        await watcher.stop()
    assert workspace.committer is not None
    workspace.committer.flush()
    await watcher.flush()
    relative = f"memory/helper/{day.isoformat()}.md"
    assert git(data, "status", "--porcelain", "--", relative).strip() == ""
    authors = added_lines_by_author(data, relative)
    people = {line: author for line, author in authors.items() if line.startswith("- person ")}
    agent = {line: author for line, author in authors.items() if line.startswith("- agent ")}
    assert sorted(people) == sorted(f"- person {i}" for i in range(1, 21))
    assert set(people.values()) == {PERSON}
    assert len(agent) == count
    assert set(agent.values()) == {AGENT}


@pytest.mark.parametrize(
    "name",
    ["sedAb12Cd", "4913", ".MEMORY.md.swp", "MEMORY.md~", "#MEMORY.md#", "MEMORY.md.tmp.123", "notes.bak"],
)
def test_files_editors_and_sed_write_beside_a_file_are_never_a_persons_edit(name: str) -> None:
    from duragent.vcs.watch import is_editor_junk

    assert is_editor_junk(f"memory/assistant/{name}")


@pytest.mark.parametrize("name", ["MEMORY.md", "2026-12-03.md", "sediment.md", "sed.md"])
def test_real_files_are_watched(name: str) -> None:
    from duragent.vcs.watch import is_editor_junk

    assert not is_editor_junk(f"memory/assistant/{name}")
