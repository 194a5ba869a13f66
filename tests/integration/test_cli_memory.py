"""`duragent memory ...` and `duragent agent context` on a real workspace with a real git repository."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from duragent.cli import build_app
from duragent.errors import NotFound, UsageError
from duragent.memory.importing import InvalidMemoryArchive
from duragent.scaffold import init_workspace
from duragent.stores.base import utcnow

DURAGENT = Path(sys.executable).parent / "duragent"
PERSON = "Test Person <person@example.test>"


def run(*args: str) -> Result:
    return CliRunner().invoke(build_app(), list(args))


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    init_workspace(tmp_path / "ws")
    monkeypatch.chdir(tmp_path / "ws")
    return tmp_path / "ws"


@pytest.fixture
def memory(workspace: Path) -> Path:
    folder = workspace / ".duragent" / "memory" / "assistant"
    (folder / "2026-11-25.md").write_text(
        "# 2026-11-25\n\n## Decisions Made\n- Chose Telegram as primary interface\n\n"
        "## Facts Stored\n- User's blog: example.com\n"
    )
    (folder / "2026-11-26.md").write_text("# 2026-11-26\n\n## Preferences Learned\n- Prefers bullet points\n")
    (folder / "MEMORY.md").write_text("# Long-term memory\n\n- Works on Duragent\n")
    return folder


def test_add_writes_a_bullet_in_its_section_committed_as_the_person(workspace: Path) -> None:
    result = run("memory", "add", "Ships on Fridays", "--section", "decision")
    assert result.exit_code == 0, result.output
    today = utcnow().date().isoformat()
    text = (workspace / ".duragent" / "memory" / "assistant" / f"{today}.md").read_text()
    assert "## Decisions Made\n- Ships on Fridays\n" in text
    log = git(workspace / ".duragent", "log", "-1", "--format=%an <%ae>%n%s%n%b")
    assert log.startswith(f"{PERSON}\nedit: memory/assistant/{today}.md (decisions +1)")
    assert "Duragent-Kind: edit" in log


def test_add_refuses_an_unknown_section(workspace: Path) -> None:
    result = run("memory", "add", "x", "--section", "gossip")
    assert isinstance(result.exception, UsageError)
    assert "fact, preference or decision" in str(result.exception)


def test_show_prints_long_term_and_latest_days_and_json_has_entries(memory: Path) -> None:
    result = run("memory", "show")
    assert result.exit_code == 0, result.output
    assert "==> MEMORY.md <==" in result.output
    assert "Prefers bullet points" in result.output
    assert "Chose Telegram" in result.output
    shown = json.loads(run("memory", "show", "assistant", "--date", "2026-11-25", "--json").output)
    assert shown["agent"] == "assistant"
    assert shown["long_term"] is None
    assert shown["days"][0]["date"] == "2026-11-25"
    assert {"section": "decision", "text": "Chose Telegram as primary interface"} in shown["days"][0][
        "entries"
    ]


def test_show_of_a_day_without_memory_says_so(memory: Path) -> None:
    result = run("memory", "show", "--date", "2020-01-01")
    assert isinstance(result.exception, NotFound)
    assert "no memory for 2020-01-01" in str(result.exception)


def test_search_finds_entries_by_word_section_and_date(memory: Path) -> None:
    found = json.loads(run("memory", "search", "telegram", "--json").output)
    assert found == [
        {
            "agent": "assistant",
            "date": "2026-11-25",
            "section": "decision",
            "text": "Chose Telegram as primary interface",
        }
    ]
    assert json.loads(run("memory", "search", "telegram", "--section", "fact", "--json").output) == []
    assert json.loads(run("memory", "search", "telegram", "--since", "2026-11-26", "--json").output) == []
    assert "Nothing remembered matches" in run("memory", "search", "kangaroo").output


def test_edit_opens_the_editor_and_commits_the_save_as_the_person(workspace: Path, memory: Path) -> None:
    editor = workspace / "editor.py"
    editor.write_text(
        "import sys\n"
        "path = sys.argv[1]\n"
        "text = open(path).read()\n"
        "open(path, 'w').write(text + '- Added in the editor\\n')\n"
    )
    result = CliRunner().invoke(
        build_app(),
        ["memory", "edit", "--long-term"],
        env={"EDITOR": f"{sys.executable} {editor}", "VISUAL": ""},
    )
    assert result.exit_code == 0, result.output
    assert "Committed" in result.output
    assert (memory / "MEMORY.md").read_text().endswith("- Works on Duragent\n- Added in the editor\n")
    log = git(workspace / ".duragent", "log", "-1", "--format=%an <%ae>|%s")
    assert log.strip() == f"{PERSON}|edit: memory/assistant/MEMORY.md"


def test_an_edit_that_takes_back_the_agents_last_note_is_the_persons(workspace: Path) -> None:
    """The file then holds bytes the agent once wrote (before its last note): still the person's
    edit, committed as theirs, not left over for the agent's committer."""
    from datetime import date

    from duragent.config import load_config
    from duragent.stores.base import MemoryEntry
    from duragent.workspace import Workspace

    async def agent_remembers() -> None:
        async with Workspace(load_config()) as agent_side:
            for text in ("the user likes tea", "the user hates everything"):
                entry = MemoryEntry(text, "fact", date(2026, 11, 27))
                await agent_side.stores.memory.put("assistant", entry)

    asyncio.run(agent_remembers())
    editor = workspace / "editor.py"
    editor.write_text(
        "import sys\n"
        "path = sys.argv[1]\n"
        "lines = open(path).readlines()\n"
        "open(path, 'w').writelines(line for line in lines if 'hates' not in line)\n"
    )

    result = CliRunner().invoke(
        build_app(),
        ["memory", "edit", "--date", "2026-11-27"],
        env={"EDITOR": f"{sys.executable} {editor}", "VISUAL": ""},
    )

    assert result.exit_code == 0, result.output
    log = git(workspace / ".duragent", "log", "-1", "--format=%an <%ae>|%s")
    assert log.strip() == f"{PERSON}|edit: memory/assistant/2026-11-27.md"
    assert git(workspace / ".duragent", "status", "--porcelain").strip() == ""


def test_edit_keeps_the_windows_line_endings_of_a_file(workspace: Path, memory: Path) -> None:
    long_term = memory / "MEMORY.md"
    long_term.write_bytes(b"# Long-term memory\r\n\r\n- Works on Duragent\r\n")
    editor = workspace / "editor.py"
    editor.write_text(  # an editor that keeps the file's line endings, as editors do
        "import sys\n"
        "path = sys.argv[1]\n"
        "data = open(path, 'rb').read()\n"
        "open(path, 'wb').write(data.replace(b'Duragent', b'Duragent and tea'))\n"
    )

    result = CliRunner().invoke(
        build_app(),
        ["memory", "edit", "--long-term"],
        env={"EDITOR": f"{sys.executable} {editor}", "VISUAL": ""},
    )

    assert result.exit_code == 0, result.output
    assert long_term.read_bytes() == b"# Long-term memory\r\n\r\n- Works on Duragent and tea\r\n"


def test_edit_keeps_what_the_agent_wrote_while_the_editor_was_open(workspace: Path, memory: Path) -> None:
    """An editor saves its whole buffer: on the real file, a note the agent added while it was
    open was dropped (and the loss committed as the person's edit)."""
    long_term = memory / "MEMORY.md"
    editor = workspace / "editor.py"
    editor.write_text(
        "import sys\n"
        "path = sys.argv[1]\n"
        "text = open(path).read()\n"
        f"open({str(long_term)!r}, 'a').write('- The agent wrote this meanwhile\\n')  # the agent\n"
        "text = text.replace('Works on Duragent', 'Works on Duragent daily')\n"
        "open(path, 'w').write(text + '- Typed by me\\n')\n"
    )
    result = CliRunner().invoke(
        build_app(),
        ["memory", "edit", "--long-term"],
        env={"EDITOR": f"{sys.executable} {editor}", "VISUAL": ""},
    )
    assert result.exit_code == 0, result.output
    assert "Merged your edit" in result.output
    text = long_term.read_text()
    assert "- Works on Duragent daily\n" in text
    assert "- The agent wrote this meanwhile\n" in text
    assert "- Typed by me\n" in text
    assert "Committed" in result.output


def test_edit_without_changes_commits_nothing(workspace: Path, memory: Path) -> None:
    head = git(workspace / ".duragent", "rev-parse", "HEAD")
    run("memory", "show")  # commits the fixture's files as the person's offline edit
    head = git(workspace / ".duragent", "rev-parse", "HEAD")
    result = CliRunner().invoke(
        build_app(), ["memory", "edit", "--date", "2026-11-26"], env={"EDITOR": "true", "VISUAL": ""}
    )
    assert result.exit_code == 0, result.output
    assert "No changes." in result.output
    assert git(workspace / ".duragent", "rev-parse", "HEAD") == head


def test_an_editor_that_is_not_installed_is_named_not_a_traceback(workspace: Path, memory: Path) -> None:
    """`EDITOR=code` over SSH, where there is no `code`: say which variable and what to do."""
    result = CliRunner().invoke(
        build_app(), ["memory", "edit"], env={"EDITOR": "no-such-editor --wait", "VISUAL": ""}
    )

    assert isinstance(result.exception, UsageError), result.exception
    assert "$EDITOR names 'no-such-editor --wait', which is not installed here" in str(result.exception)
    assert "export EDITOR=nano" in str(result.exception)


def test_export_then_import_into_another_workspace_merges_and_commits(
    tmp_path: Path, workspace: Path, memory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tmp_path / "memory.tar.gz"
    assert run("memory", "export", "-o", str(archive)).exit_code == 0
    with tarfile.open(archive) as tar:
        names = sorted(tar.getnames())
    assert "memory/assistant/2026-11-25.md" in names
    assert "memory/assistant/MEMORY.md" in names

    init_workspace(tmp_path / "other")
    monkeypatch.chdir(tmp_path / "other")
    other = tmp_path / "other" / ".duragent" / "memory" / "assistant"
    (other / "2026-11-25.md").write_text("# 2026-11-25\n\n## Facts Stored\n- Already known here\n")
    result = run("memory", "import", str(archive))
    assert result.exit_code == 0, result.output
    merged = (other / "2026-11-25.md").read_text()
    assert "- Already known here\n" in merged
    assert "- User's blog: example.com\n" in merged
    assert "## Decisions Made\n- Chose Telegram as primary interface\n" in merged
    assert (other / "2026-11-26.md").read_text() == (memory / "2026-11-26.md").read_text()
    log = git(tmp_path / "other" / ".duragent", "log", "-1", "--format=%an <%ae>|%s")
    assert log.startswith(f"{PERSON}|edit: ")
    assert "import of memory.tar.gz" in log
    assert run("memory", "import", str(archive)).output.count("unchanged") == 1


def test_import_redacts_a_key_in_the_archive_as_the_memory_store_does(
    workspace: Path, tmp_path: Path
) -> None:
    archive = tmp_path / "keyed.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        data = b"# 2026-11-27\n\n## Facts Stored\n- deploy token ghp_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789\n"
        info = tarfile.TarInfo("memory/assistant/2026-11-27.md")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))

    result = run("memory", "import", str(archive))

    assert result.exit_code == 0, result.output
    daily = (workspace / ".duragent" / "memory" / "assistant" / "2026-11-27.md").read_text()
    assert "- deploy token [REDACTED:GITHUB_TOKEN]\n" in daily
    assert "ghp_" not in git(workspace / ".duragent", "log", "-p", "--all")


def test_import_refuses_an_archive_with_paths_outside_memory(workspace: Path, tmp_path: Path) -> None:
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        names = ("memory/assistant/ok.md", "memory/../../etc/passwd.md", "agents/x/agent.yaml")
        for name in (*names, "memory/assistant/2026-13-45.md"):
            data = b"- hi\n"
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    result = run("memory", "import", str(archive))
    assert isinstance(result.exception, InvalidMemoryArchive)
    assert result.exception.exit_code == 2
    assert "escapes the memory folder" in str(result.exception)
    assert "not under memory/" in str(result.exception)
    assert "2026-13-45 is not a date (daily files are named YYYY-MM-DD.md)" in str(result.exception)
    assert not (workspace / ".duragent" / "memory" / "assistant" / "ok.md").exists()


def test_export_to_stdout_in_a_real_process_is_a_tar_gz(workspace: Path, memory: Path) -> None:
    done = subprocess.run(
        [str(DURAGENT), "memory", "export", "--agent", "assistant"],
        cwd=workspace,
        capture_output=True,
        check=True,
    )
    with tarfile.open(fileobj=io.BytesIO(done.stdout), mode="r:gz") as tar:
        assert "memory/assistant/2026-11-26.md" in tar.getnames()


def test_agent_context_shows_memory_newest_day_first_within_the_budget(workspace: Path, memory: Path) -> None:
    today = utcnow().date().isoformat()
    (memory / f"{today}.md").write_text(f"# {today}\n\n## Facts Stored\n- Fresh fact of today\n")
    result = run("agent", "context", "assistant")
    assert result.exit_code == 0, result.output
    assert "===== system =====" in result.output
    assert "# Long-term memory (MEMORY.md)" in result.output
    assert "Fresh fact of today" in result.output
    shown = json.loads(run("agent", "context", "assistant", "--json").output)
    assert any(part["name"] == "memory" for part in shown["parts"])


def test_show_and_add_both_take_the_agent_as_agent_and_say_how_to_name_one(workspace: Path) -> None:
    init_workspace(workspace, agent="scribe")
    for command in (["memory", "show"], ["memory", "add", "a fact"]):
        refused = run(*command)
        assert isinstance(refused.exception, UsageError)
        assert "pick one with --agent NAME" in str(refused.exception)
    added = run("memory", "add", "--agent", "scribe", "likes oolong")
    assert added.exit_code == 0, added.output
    shown = run("memory", "show", "--agent", "scribe")
    assert shown.exit_code == 0, shown.output
    assert "likes oolong" in shown.output
    assert "likes oolong" not in run("memory", "show", "assistant").output


@pytest.fixture
async def pg_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Path]:
    """A workspace whose memory lives in PostgreSQL (a throwaway schema)."""
    from duragent.testing.postgres import temporary_schema

    async with temporary_schema() as url:
        init_workspace(tmp_path / "ws")
        config = tmp_path / "ws" / "duragent.yaml"
        stored_on_files = "  memory:\n    backend: filesystem\n    path: ./.duragent/memory/\n"
        in_postgres = f"  memory:\n    backend: postgres\n    url: '{url}'\n"
        config.write_text(config.read_text().replace(stored_on_files, in_postgres))
        monkeypatch.chdir(tmp_path / "ws")
        yield tmp_path / "ws"


def editor_that(workspace: Path, script: str) -> dict[str, str]:
    """$EDITOR running `script` (Python, the file's path in `path`)."""
    editor = workspace / "editor.py"
    editor.write_text("import subprocess, sys\npath = sys.argv[1]\n" + script)
    return {"EDITOR": f"{sys.executable} {editor}", "VISUAL": ""}


def test_edit_with_memory_in_postgres_edits_the_stored_text(pg_workspace: Path) -> None:
    assert run("memory", "add", "Works on Duragent", "--section", "fact").exit_code == 0
    env = editor_that(
        pg_workspace,
        "text = open(path).read()\nopen(path, 'w').write(text.replace('Duragent', 'Duragent daily'))\n",
    )

    result = CliRunner().invoke(build_app(), ["memory", "edit"], env=env)

    assert result.exit_code == 0, result.output
    assert "postgres memory store" in result.output
    shown = run("memory", "show").output
    assert "Works on Duragent daily" in shown
    assert not (pg_workspace / ".duragent" / "memory" / "assistant" / f"{utcnow().date()}.md").exists()
    long_term = CliRunner().invoke(
        build_app(),
        ["memory", "edit", "--long-term"],
        env=editor_that(pg_workspace, "open(path, 'a').write('- tea\\n')\n"),
    )
    assert long_term.exit_code == 0, long_term.output
    assert "- tea" in run("memory", "show").output


def test_edit_with_memory_in_postgres_refuses_to_overwrite_a_change_made_meanwhile(
    pg_workspace: Path,
) -> None:
    assert run("memory", "add", "first fact").exit_code == 0
    # while the person edits, the agent (here: another process) remembers something new
    env = editor_that(
        pg_workspace,
        f"subprocess.run([{str(DURAGENT)!r}, 'memory', 'add', 'written meanwhile'], check=True)\n"
        "open(path, 'w').write('# the person rewrote it all\\n')\n",
    )

    result = CliRunner().invoke(build_app(), ["memory", "edit"], env=env)

    assert result.exit_code != 0
    assert "changed while it was being edited; nothing was written" in str(result.exception)
    kept = pg_workspace / f"assistant-{utcnow().date()}.md.edited"
    assert kept.read_text() == "# the person rewrote it all\n"
    shown = run("memory", "show").output
    assert "first fact" in shown
    assert "written meanwhile" in shown
    assert "the person rewrote it all" not in shown


def test_import_waits_for_the_memory_lock_and_keeps_a_write_made_while_it_waited(tmp_path: Path) -> None:
    import threading
    from pathlib import PurePosixPath

    from duragent.memory.importing import import_memory
    from duragent.stores.filesystem.locks import memory_file_lock

    root = tmp_path / "memory"
    daily = root / "assistant" / "2026-11-26.md"
    daily.parent.mkdir(parents=True)
    daily.write_text("# 2026-11-26\n\n## Facts Stored\n- here already\n")
    incoming = {PurePosixPath("assistant/2026-11-26.md"): "# 2026-11-26\n\n## Facts Stored\n- imported\n"}
    with memory_file_lock(root, daily):  # a store writing the file right now
        importing = threading.Thread(target=import_memory, args=(incoming, root))
        importing.start()
        importing.join(0.5)
        assert importing.is_alive(), "import did not wait for the memory store's lock"
        daily.write_text(daily.read_text() + "- written while import waited\n")
    importing.join(30)
    text = daily.read_text()
    for bullet in ("- here already\n", "- written while import waited\n", "- imported\n"):
        assert bullet in text
