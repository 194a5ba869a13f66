"""A memory file a person saved in another encoding (a Latin-1 `é`, a stray binary byte) keeps the
agent working: turns still read memory, `remember` still adds its bullet without touching the
person's bytes, and `duragent memory show`/`search` print the file instead of a traceback."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from duragent.agents.loader import Agent
from duragent.cli import build_app
from duragent.runtime.events import ToolCallFinished, TurnFinished
from duragent.runtime.loop import Runtime, drain
from duragent.runtime.memory_context import session_folder, working_memory_path
from duragent.scaffold import init_workspace
from duragent.sessions.log import SessionLog
from duragent.stores.base import MemoryEntry, utcnow
from duragent.stores.filesystem.memory import FilesystemMemoryStore
from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from tests.integration.turn_setup import agent_in, runtime_on

pytest_plugins = ["duragent.testing.pytest_plugin"]

AGENT_YAML = """\
name: helper
model:
  provider: openai
  name: gpt-test
  base_url: {url}
memory: {{enabled: true}}
"""

LATIN1_DAY = b"# {day}\n\n## Facts Stored\n- The user lives in Orl\xe9ans\n"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def agent(data: Path, fake_llm: FakeLLMServer) -> Agent:
    return agent_in(data, AGENT_YAML.format(url=fake_llm.url))


@pytest.fixture
async def runtime(data: Path) -> AsyncIterator[Runtime]:
    async with runtime_on(data) as made:
        yield made


def write_latin1_day(folder: Path, day: date) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{day.isoformat()}.md"
    path.write_bytes(LATIN1_DAY.replace(b"{day}", day.isoformat().encode()))
    return path


async def test_a_turn_still_runs_with_a_latin1_byte_in_todays_memory(
    fake_llm: FakeLLMServer, agent: Agent, session: SessionLog, runtime: Runtime, data: Path
) -> None:
    write_latin1_day(data / "memory" / "helper", date.today())
    (data / "memory" / "helper" / "MEMORY.md").write_bytes(b"- binary junk \xff\xfe here\n")
    fake_llm.enqueue(text("ok"))

    events = await drain(runtime.run_turn(session, agent, "hello"))

    assert isinstance(events[-1], TurnFinished), events[-1]
    prompt = str(fake_llm.requests[-1].body["messages"][0]["content"])
    assert "The user lives in Orl\ufffdans" in prompt
    assert "binary junk \ufffd\ufffd here" in prompt


async def test_a_turn_still_runs_with_a_latin1_byte_in_the_sessions_working_memory(
    fake_llm: FakeLLMServer, agent: Agent, session: SessionLog, runtime: Runtime
) -> None:
    folder = session_folder(session.store, session.session_id)
    assert folder is not None
    working = working_memory_path(folder)
    working.parent.mkdir(parents=True, exist_ok=True)
    working.write_bytes(b"- draft for Orl\xe9ans\n")
    fake_llm.enqueue(text("ok"))

    events = await drain(runtime.run_turn(session, agent, "hello"))

    assert isinstance(events[-1], TurnFinished), events[-1]
    assert "draft for Orl\ufffdans" in str(fake_llm.requests[-1].body["messages"][0]["content"])


async def test_remember_keeps_the_persons_bytes_in_a_file_that_is_not_utf8(
    fake_llm: FakeLLMServer, agent: Agent, session: SessionLog, runtime: Runtime, data: Path
) -> None:
    today = utcnow().date()
    path = write_latin1_day(data / "memory" / "helper", today)
    fake_llm.enqueue(
        tool_calls([("memory", {"action": "remember", "content": "Prefers tea", "section": "fact"})])
    )
    fake_llm.enqueue(text("noted"))

    events = await drain(runtime.run_turn(session, agent, "remember that I prefer tea"))

    finished = [event for event in events if isinstance(event, ToolCallFinished)]
    assert finished, events
    assert finished[0].ok, finished[0].content
    assert path.read_bytes() == LATIN1_DAY.replace(b"{day}", today.isoformat().encode()) + b"- Prefers tea\n"


def test_memory_show_and_search_print_a_file_that_is_not_utf8(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    init_workspace(tmp_path / "ws")
    monkeypatch.chdir(tmp_path / "ws")
    write_latin1_day(tmp_path / "ws" / ".duragent" / "memory" / "assistant", date(2026, 11, 25))

    shown = CliRunner().invoke(build_app(), ["memory", "show", "--date", "2026-11-25"])
    found = CliRunner().invoke(build_app(), ["memory", "search", "Orl"])

    assert shown.exit_code == 0, shown.output
    assert "The user lives in Orl\ufffdans" in shown.output
    assert found.exit_code == 0, found.output
    assert "The user lives in Orl\ufffdans" in found.output


def test_memory_edit_gives_the_editor_the_files_bytes_and_keeps_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    init_workspace(tmp_path / "ws")
    monkeypatch.chdir(tmp_path / "ws")
    path = write_latin1_day(tmp_path / "ws" / ".duragent" / "memory" / "assistant", date(2026, 11, 25))
    editor = tmp_path / "editor.py"
    editor.write_text(
        "import sys\n"
        "path = sys.argv[1]\n"
        "data = open(path, 'rb').read()\n"
        "open(path, 'wb').write(data + b'- Added in the editor\\n')\n"
    )

    result = CliRunner().invoke(
        build_app(),
        ["memory", "edit", "--date", "2026-11-25"],
        env={"EDITOR": f"{sys.executable} {editor}", "VISUAL": ""},
    )

    assert result.exit_code == 0, result.output
    assert "Committed" in result.output
    assert path.read_bytes() == LATIN1_DAY.replace(b"{day}", b"2026-11-25") + b"- Added in the editor\n"


def test_the_dashboard_editor_shows_such_a_file_and_refuses_to_overwrite_its_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from duragent.config import load_config
    from duragent.memory.files import MemoryFileNotText, read_memory_file, save_memory_file, text_stamp
    from duragent.workspace import Workspace

    init_workspace(tmp_path / "ws")
    monkeypatch.chdir(tmp_path / "ws")
    path = write_latin1_day(tmp_path / "ws" / ".duragent" / "memory" / "assistant", date(2026, 11, 25))
    workspace = Workspace(load_config())

    shown = read_memory_file(workspace, "assistant", "2026-11-25.md")
    assert "The user lives in Orl\ufffdans" in shown
    with pytest.raises(MemoryFileNotText, match=r"2026-11-25\.md.*byte 53.*duragent memory edit"):
        save_memory_file(
            workspace, "assistant", "2026-11-25.md", shown + "- more\n", opened=text_stamp(shown)
        )

    assert path.read_bytes() == LATIN1_DAY.replace(b"{day}", b"2026-11-25")


async def test_a_lone_surrogate_in_new_text_is_written_as_a_replacement_character(tmp_path: Path) -> None:
    """(JSON can carry `"\\udce9"`; it must not become a raw byte in the file.)"""
    store = FilesystemMemoryStore(tmp_path / "memory")
    today = utcnow().date()

    await store.put("helper", MemoryEntry("Orl\udce9ans", "fact", today))
    await store.write_long_term("helper", "- Lives in Orl\udce9ans\n")

    day = (tmp_path / "memory" / "helper" / f"{today.isoformat()}.md").read_bytes()
    assert day.endswith("- Orl\ufffdans\n".encode())
    assert (tmp_path / "memory" / "helper" / "MEMORY.md").read_bytes() == "- Lives in Orl\ufffdans\n".encode()
