"""Recovery at start resumes only turns a stop or crash cut off, never a turn that ended.

Each restart is a new store and manager over the same session folder, as `duragent serve`
builds them; the model is a real HTTP server and the tool a real bash command.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from duragent.agents.loader import Agent, load_agent
from duragent.config import DuragentConfig
from duragent.runtime.loop import Runtime
from duragent.runtime.providers import ProviderPool
from duragent.sessions.manager import SessionManager
from duragent.stores.filesystem.sessions import FilesystemSessionStore
from duragent.testing.fake_llm import FakeLLMServer, delay, error, text, tool_calls

pytest_plugins = ["duragent.testing.pytest_plugin"]

AGENT_YAML = """\
apiVersion: duragent/v1alpha1
kind: Agent
metadata:
  name: helper
spec:
  model:
    provider: openai
    name: gpt-test
    base_url: {url}
  system_prompt: test
  tools:
    builtin: [bash]
    policy:
      mode: allow
"""

ManagerFactory = Callable[[], SessionManager]


@pytest.fixture
def agent(tmp_path: Path, fake_llm: FakeLLMServer) -> Agent:
    directory = tmp_path / "agents" / "helper"
    directory.mkdir(parents=True)
    (directory / "agent.yaml").write_text(AGENT_YAML.format(url=fake_llm.url))
    loaded, _ = load_agent(directory, env={"OPENAI_API_KEY": "sk-test"})
    return loaded


@pytest.fixture
async def start_server(tmp_path: Path, agent: Agent) -> AsyncIterator[ManagerFactory]:
    """Each call is a server start: a new store and manager over `<tmp>/sessions`, recovered."""
    made: list[tuple[SessionManager, FilesystemSessionStore, ProviderPool]] = []

    def make() -> SessionManager:
        store = FilesystemSessionStore(tmp_path / "sessions", fsync="never")
        providers = ProviderPool({"OPENAI_API_KEY": "sk-test"})
        config = DuragentConfig.model_validate({"session": {"on_disconnect": "continue"}})
        manager = SessionManager(store, Runtime(provider_for=providers.for_agent), config, lambda name: agent)
        made.append((manager, store, providers))
        return manager

    yield make
    for manager, store, providers in made:
        await manager.close(grace=0)
        await store.close()
        await providers.close()


async def eventually(check: Callable[[], bool], within: float = 10.0) -> None:
    """Wait until `check()` holds (fails the test after `within` seconds)."""
    async with asyncio.timeout(within):
        while True:
            if check():
                return
            await asyncio.sleep(0.02)


def runs(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


async def restart_twice(start_server: ManagerFactory, session_id: str) -> list[tuple[str, ...]]:
    """Two server starts in a row; what each one's recovery resumed (after its turns ended)."""
    resumed = []
    for _ in range(2):
        manager = start_server()
        report = await manager.recover()
        resumed.append(report.resumed)
        live = manager.live.get(session_id)
        if live is not None and live.busy:
            await asyncio.wait_for(live.turn_finished.wait(), 10)
        await manager.close(grace=5)
    return resumed


async def test_a_turn_that_failed_after_a_tool_ran_is_not_run_again_by_two_restarts(
    start_server: ManagerFactory, fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    counter = tmp_path / "work" / "helper" / "runs.txt"  # (the tool's own folder: no approval)
    command = {"command": f"echo ran >> {counter}"}
    # The turn: a bash call, then the model refuses (400, not retried): the turn fails.
    # Every later answer would run the command again if anything asked the model.
    fake_llm.enqueue(tool_calls([("bash", command)]), error(400, "bad request"))
    fake_llm.default = tool_calls([("bash", command)])
    manager = start_server()
    live = await manager.create("helper")
    session_id = live.session_id
    await live.submit("run it once")
    await asyncio.wait_for(live.turn_finished.wait(), 10)
    assert runs(counter) == 1
    await manager.close(grace=5)
    requests = len(fake_llm.requests)

    assert await restart_twice(start_server, session_id) == [(), ()]
    assert runs(counter) == 1
    assert len(fake_llm.requests) == requests  # the model was not asked again


async def test_a_cancelled_turn_is_not_run_again_after_a_restart(
    start_server: ManagerFactory, fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    counter = tmp_path / "work" / "helper" / "runs.txt"  # (the tool's own folder: no approval)
    fake_llm.enqueue(tool_calls([("bash", {"command": f"echo ran >> {counter}; sleep 30"})]))
    fake_llm.default = text("must not be asked")
    manager = start_server()
    live = await manager.create("helper")
    session_id = live.session_id
    await live.submit("start something long")
    await eventually(lambda: runs(counter) > 0)
    assert await live.cancel()
    await manager.close(grace=5)
    requests = len(fake_llm.requests)

    assert await restart_twice(start_server, session_id) == [(), ()]
    assert runs(counter) == 1
    assert len(fake_llm.requests) == requests


async def test_a_turn_cut_off_by_a_stop_still_resumes_once_and_finishes(
    start_server: ManagerFactory, fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    counter = tmp_path / "work" / "helper" / "runs.txt"  # (the tool's own folder: no approval)
    command = {"command": f"echo ran >> {counter}"}
    fake_llm.enqueue(tool_calls([("bash", command)]), delay(5, text("cut off")), text("finished"))
    manager = start_server()
    live = await manager.create("helper")
    session_id = live.session_id
    await live.submit("go")
    await eventually(lambda: len(fake_llm.requests) >= 2)  # the tool ran; the model is asked again
    await manager.close(grace=0.05)  # the stop cuts the model call off

    resumed = await restart_twice(start_server, session_id)
    assert resumed[0] == (session_id,)
    assert resumed[1] == ()
    assert runs(counter) == 1
    final = FilesystemSessionStore(tmp_path / "sessions", fsync="never")
    try:
        events = await final.read(session_id)
    finally:
        await final.close()
    assert [e.payload["content"] for e in events if e.type == "assistant_message"][-1] == "finished"


async def test_a_turn_a_crash_cut_off_restarts_with_an_event_saying_which_text_is_void(
    start_server: ManagerFactory, fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    manager = start_server()
    live = await manager.create("helper")
    session_id = live.session_id
    # What a crash leaves: the message is stored, the reply was streaming (tokens "2.1", "2.2"...
    # reached clients) but never stored.
    user = await live.log.append("user_message", {"content": "hello", "turn": 1})
    await manager.close(grace=0)

    fake_llm.enqueue(text("the whole reply"))
    restarted = start_server()
    assert (await restarted.recover()).resumed == (session_id,)
    resumed = restarted.live[session_id]
    await asyncio.wait_for(resumed.turn_finished.wait(), 10)
    events = await resumed.log.store.read(session_id)
    kinds = [e.type for e in events if e.seq > user.seq]
    assert kinds[kinds.index("attempt_restarted") :][:2] == ["attempt_restarted", "assistant_message"]
    (restart,) = [e for e in events if e.type == "attempt_restarted"]
    assert restart.payload == {"discard_after": str(user.seq), "turn": 1}


async def test_a_session_a_crash_left_running_after_its_turn_ended_is_idle_again_after_a_restart(
    start_server: ManagerFactory, fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    fake_llm.enqueue(text("done"))
    manager = start_server()
    live = await manager.create("helper")
    session_id = live.session_id
    await live.submit("hi")  # nobody attached: the session runs unattended (`running`)
    await asyncio.wait_for(live.turn_finished.wait(), 10)
    await manager.close(grace=5)
    # the crash: killed after the reply was stored, before the status went back to `active`
    folder = tmp_path / "sessions" / session_id
    events = folder / "events.jsonl"
    lines = events.read_text().splitlines(keepends=True)
    while '"status_change"' not in lines[-1] or '"to":"running"' in lines[-1].replace(" ", ""):
        lines.pop()  # drop whatever was written after the reply, up to its status change
    assert '"to":"active"' in lines[-1].replace(" ", "")
    events.write_text("".join(lines[:-1]))
    for snapshot in folder.glob("state*"):
        snapshot.unlink()

    manager = start_server()
    report = await manager.recover()
    assert report.resumed == ()
    [summary] = await manager.list_sessions()
    assert summary.status == "active"
    assert len(fake_llm.requests) == 1  # nothing was run again
