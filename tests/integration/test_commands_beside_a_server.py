"""A person's `duragent` commands commit memory files a running server's agent wrote moments
before, while that server's committer still has those writes to commit: real git, a real
committer, real `duragent` processes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from duragent.client.runfile import write_run_info
from duragent.config import load_config
from duragent.scaffold import init_workspace
from duragent.stores.base import MemoryEntry, utcnow
from duragent.workspace import Workspace
from tests.waiting import until

DURAGENT = Path(sys.executable).parent / "duragent"
PERSON = "Test Person <person@example.test>"
AGENT = "Duragent <duragent@localhost>"


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout


def lines_by_author(data: Path, path: str) -> list[tuple[str, str]]:
    """Every line added (+) or removed (-) in `path`'s history, oldest first, with its commit's author."""
    out = git(data, "log", "--reverse", "--format=\x1e%an <%ae>", "-p", "--", path)
    changes: list[tuple[str, str]] = []
    for commit in out.split("\x1e")[1:]:
        author, _, patch = commit.partition("\n")
        for line in patch.splitlines():
            if line.startswith(("+", "-")) and not line.startswith(("+++", "---")):
                changes.append((author, line))
    return changes


@pytest.fixture
def root(tmp_path: Path) -> Path:
    init_workspace(tmp_path / "ws")
    config = tmp_path / "ws" / "duragent.yaml"
    # the server's committer keeps the agent's writes pending until the test flushes it
    config.write_text(config.read_text() + "\ngit:\n  commit_debounce: 1h\n  max_commit_delay: 1h\n")
    return tmp_path / "ws"


@pytest.fixture
def data(root: Path) -> Path:
    return root / ".duragent"


@pytest.fixture
def server(root: Path, data: Path) -> Iterator[Workspace]:
    """The server's side: its workspace (stores, committer), with the run file a server writes."""
    workspace = Workspace(load_config(root / "duragent.yaml"))
    workspace.commit_offline_edits()  # what `duragent init` wrote
    write_run_info(data, {"pid": os.getpid(), "url": "http://127.0.0.1:9"})
    yield workspace
    asyncio.run(workspace.close())


def memory_edit(root: Path, day: str, script: str) -> subprocess.CompletedProcess[str]:
    """`duragent memory edit --date DAY` in its own process, the editor running `script` on `path`."""
    editor = root / "editor.py"
    editor.write_text("import sys\npath = sys.argv[1]\n" + script)
    env = {**os.environ, "EDITOR": f"{sys.executable} {editor}", "VISUAL": ""}
    return subprocess.run(
        [str(DURAGENT), "memory", "edit", "--date", day],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


APPEND_A_LINE = "open(path, 'a').write('- the person typed this\\n')\n"


def remember(server: Workspace, text: str) -> None:
    """The server's agent remembers `text` today (its committer is told, and waits)."""
    asyncio.run(server.stores.memory.put("assistant", MemoryEntry(text, day=utcnow().date())))


def test_the_servers_committer_never_commits_an_agent_write_back_over_a_persons_later_commit(
    root: Path, data: Path, server: Workspace
) -> None:
    """The server's committer committed the bytes its agent wrote even after a person's `memory
    edit` had committed the file since: the log showed the agent taking the person's line out
    (and the edit watcher's commit putting it back)."""
    relative = f"memory/assistant/{utcnow().date().isoformat()}.md"
    remember(server, "the agent noted this")
    assert server.committer is not None
    assert server.committer.pending == 1

    edited = memory_edit(root, utcnow().date().isoformat(), APPEND_A_LINE)
    assert edited.returncode == 0, edited.stderr
    server.committer.flush()

    assert [line for _, line in lines_by_author(data, relative) if line.startswith("-")] == []
    assert git(data, "show", f"HEAD:{relative}") == (data / relative).read_text()
    assert git(data, "status", "--porcelain", "--", relative) == ""


def test_the_agents_write_after_a_persons_commit_is_committed_as_the_agents_on_top_of_it(
    root: Path, data: Path, server: Workspace
) -> None:
    relative = f"memory/assistant/{utcnow().date().isoformat()}.md"
    remember(server, "the agent noted this")
    edited = memory_edit(root, utcnow().date().isoformat(), APPEND_A_LINE)
    assert edited.returncode == 0, edited.stderr
    remember(server, "the agent noted this later")
    assert server.committer is not None
    server.committer.flush()

    history = lines_by_author(data, relative)
    assert [line for _, line in history if line.startswith("-")] == []
    assert (AGENT, "+- the agent noted this later") in history
    assert (PERSON, "+- the person typed this") in history
    assert git(data, "status", "--porcelain", "--", relative) == ""


def test_memory_edit_commits_the_agents_uncommitted_line_it_merged_as_the_agents(
    root: Path, data: Path, server: Workspace
) -> None:
    """`memory edit` merged what the agent wrote while the editor was open into the person's
    edit and committed it all as the person's, the server's committer not having committed the
    agent's line yet."""
    day = utcnow().date().isoformat()
    relative = f"memory/assistant/{day}.md"
    remember(server, "the agent noted this first")
    assert server.committer is not None
    server.committer.flush()
    opened, saved = root / "editor-open", root / "agent-wrote"
    editor = root / "editor.py"
    editor.write_text(
        "import os, sys, time\n"
        "path = sys.argv[1]\n"
        f"open({str(opened)!r}, 'w').close()\n"
        f"while not os.path.exists({str(saved)!r}):\n"
        "    time.sleep(0.01)\n"
        "open(path, 'a').write('- the person typed this\\n')\n"
    )
    env = {**os.environ, "EDITOR": f"{sys.executable} {editor}", "VISUAL": ""}
    command = [str(DURAGENT), "memory", "edit", "--date", day]
    with subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.PIPE, text=True) as editing:
        asyncio.run(until(opened.exists))
        remember(server, "the agent noted this while the editor was open")
        saved.touch()
        output, _ = editing.communicate()
    assert editing.returncode == 0
    assert "Merged your edit" in output
    server.committer.flush()

    history = lines_by_author(data, relative)
    assert (AGENT, "+- the agent noted this while the editor was open") in history
    assert (PERSON, "+- the person typed this") in history
    assert [line for _, line in history if line.startswith("-")] == []
    assert git(data, "status", "--porcelain", "--", relative) == ""


def duragent(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`duragent ARGS` run by a person in their own process, beside the server."""
    return subprocess.run([str(DURAGENT), *args], cwd=root, capture_output=True, text=True, check=False)


def test_memory_add_commits_the_agents_uncommitted_line_as_the_agents_first(
    root: Path, data: Path, server: Workspace
) -> None:
    """`memory add` committed the line the server's agent had just written (its commit still
    pending) in the person's commit, under the person's name."""
    relative = f"memory/assistant/{utcnow().date().isoformat()}.md"
    remember(server, "the agent noted this")
    assert server.committer is not None
    assert server.committer.pending == 1

    added = duragent(root, "memory", "add", "the person added this")
    assert added.returncode == 0, added.stderr
    server.committer.flush()

    history = lines_by_author(data, relative)
    assert (AGENT, "+- the agent noted this") in history
    assert (PERSON, "+- the person added this") in history
    assert [line for _, line in history if line.startswith("-")] == []
    assert git(data, "status", "--porcelain", "--", relative) == ""


def test_memory_import_commits_the_agents_uncommitted_line_as_the_agents_first(
    root: Path, data: Path, server: Workspace, tmp_path: Path
) -> None:
    """`memory import` merged the archive into a file holding a line the server's agent had just
    written, and committed that line with the import, as the person's."""
    import tarfile

    day = utcnow().date().isoformat()
    relative = f"memory/assistant/{day}.md"
    remember(server, "the agent noted this")
    exported = tmp_path / "export" / "memory" / "assistant" / f"{day}.md"
    exported.parent.mkdir(parents=True)
    exported.write_text(f"# {day}\n\n## Facts Stored\n- an imported fact\n")
    archive = tmp_path / "memory.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "export" / "memory", arcname="memory")

    imported = duragent(root, "memory", "import", str(archive))
    assert imported.returncode == 0, imported.stderr
    assert server.committer is not None
    server.committer.flush()

    history = lines_by_author(data, relative)
    assert (AGENT, "+- the agent noted this") in history
    assert (PERSON, "+- an imported fact") in history
    assert [line for _, line in history if line.startswith("-")] == []
    assert git(data, "status", "--porcelain", "--", relative) == ""


def test_revert_commits_the_agents_uncommitted_line_as_the_agents_first(
    root: Path, data: Path, server: Workspace
) -> None:
    """`revert` of an earlier memory commit took the line the server's agent had just written
    into the revert commit, under the person's name."""
    relative = f"memory/assistant/{utcnow().date().isoformat()}.md"
    remember(server, "a fact the person wants gone")
    assert server.committer is not None
    server.committer.flush()
    unwanted = git(data, "log", "-1", "--format=%H", "--", relative).strip()
    remember(server, "the agent noted this later")
    assert server.committer.pending == 1

    reverted = duragent(root, "revert", unwanted, "--yes")
    assert reverted.returncode == 0, reverted.stderr
    server.committer.flush()

    history = lines_by_author(data, relative)
    assert (AGENT, "+- the agent noted this later") in history
    assert (PERSON, "-- a fact the person wants gone") in history
    assert [(author, line) for author, line in history if author == PERSON] == [
        (PERSON, "-- a fact the person wants gone")
    ]
    assert git(data, "status", "--porcelain", "--", relative) == ""


def test_the_dashboards_revert_in_the_servers_process_commits_the_agents_line_first(
    data: Path, server: Workspace
) -> None:
    """The dashboard reverts in the server's own process, beside the committer holding the
    agent's pending write: that write is committed as the agent's, the revert as the person's."""
    from duragent.vcs.revisions import revert_revision

    relative = f"memory/assistant/{utcnow().date().isoformat()}.md"
    remember(server, "a fact the person wants gone")
    assert server.committer is not None
    assert server.human_edits is not None
    server.committer.flush()
    unwanted = git(data, "log", "-1", "--format=%H", "--", relative).strip()
    remember(server, "the agent noted this later")
    assert server.committer.pending == 1

    revertible, append_only = server.revert_scope()
    revert_revision(
        server.human_edits.repo,
        unwanted,
        revertible=revertible,
        append_only=append_only,
        memory_root=server.config.service_path("memory"),
        guard=server.guard,
        before_write=server.human_edits.commit_agent_write,  # as duragent/web/history.py passes it
    )
    server.committer.flush()

    history = lines_by_author(data, relative)
    assert (AGENT, "+- the agent noted this later") in history
    assert [(author, line) for author, line in history if author == PERSON] == [
        (PERSON, "-- a fact the person wants gone")
    ]
    assert git(data, "status", "--porcelain", "--", relative) == ""
