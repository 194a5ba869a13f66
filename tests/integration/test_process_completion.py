"""A background process's end comes back to its session: a `[process finished]` turn, by mode.

The model is a real HTTP server, the tool call goes through the runtime and its policy, and the
process is a real subprocess; `SessionReporter` queues the message as the server wires it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from duragent.agents.loader import Agent, load_agent
from duragent.config import DuragentConfig
from duragent.processes.completion import FINISHED_MARKER, SessionReporter
from duragent.processes.manager import ProcessManager, ProcessSettings
from duragent.processes.record import ProcessRecord, read_record
from duragent.runtime.loop import Runtime
from duragent.runtime.providers import ProviderPool
from duragent.sessions.manager import SessionManager
from duragent.stores.filesystem.sessions import FilesystemSessionStore
from duragent.testing.fake_llm import FakeLLMServer, ScriptedResponse, text, tool_calls
from tests.waiting import until

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
  session:
    on_disconnect: {mode}
  tools:
    builtin: [bash, background_process]
    policy:
      mode: {policy}
      deny: ["bash:rm *"]
"""


@dataclass
class Server:
    manager: SessionManager
    processes: ProcessManager
    workdir: Path


@pytest.fixture
async def start(tmp_path: Path, fake_llm: FakeLLMServer) -> AsyncIterator[Callable[..., Server]]:
    made: list[tuple[Server, FilesystemSessionStore, ProviderPool]] = []

    def make(mode: str, policy: str = "allow") -> Server:
        directory = tmp_path / "agents" / "helper"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "agent.yaml").write_text(AGENT_YAML.format(url=fake_llm.url, mode=mode, policy=policy))
        agent: Agent = load_agent(directory, env={"OPENAI_API_KEY": "sk-test"})[0]
        store = FilesystemSessionStore(tmp_path / "sessions", fsync="never")
        providers = ProviderPool({"OPENAI_API_KEY": "sk-test"})
        processes = ProcessManager(tmp_path / "processes")
        workdir = tmp_path / "work"
        runtime = Runtime(
            provider_for=providers.for_agent, processes=processes, workdir_for=lambda a: workdir
        )
        manager = SessionManager(store, runtime, DuragentConfig(), lambda name: agent)
        processes.reporter = SessionReporter(manager)
        server = Server(manager, processes, workdir)
        made.append((server, store, providers))
        return server

    yield make
    for server, store, providers in made:
        await server.processes.close()
        await server.manager.close(grace=0)
        await store.close()
        await providers.close()


def spawn(command: str, **fields: object) -> ScriptedResponse:
    return tool_calls([("background_process", {"action": "spawn", "command": command, **fields})])


def contents(server: Server, session_id: str, role: str) -> list[str]:
    live = server.manager.live[session_id]
    return [str(m.get("content")) for m in live.log.state.conversation if m.get("role") == role]


async def test_in_continue_mode_the_end_starts_a_turn_nobody_is_watching(
    start: Callable[[str], Server], fake_llm: FakeLLMServer
) -> None:
    server = start("continue")
    fake_llm.enqueue(
        spawn("sleep 0.3; echo job output; exit 2", label="long job"),
        text("Started the job; I will tell you when it is done."),
        text("The job failed with exit code 2."),
    )
    live = await server.manager.create("helper")
    await live.submit("run the long job")
    await until(lambda: len(contents(server, live.session_id, "assistant")) >= 3)
    finished = [c for c in contents(server, live.session_id, "user") if c.startswith(FINISHED_MARKER)]
    assert len(finished) == 1
    assert "(long job)" in finished[0]
    assert "exit code: 2" in finished[0]
    assert "job output" in finished[0]
    assert contents(server, live.session_id, "assistant")[-1] == "The job failed with exit code 2."
    # The model saw the message as the start of the new turn.
    assert FINISHED_MARKER in str(fake_llm.requests[-1].messages[-1])


async def test_in_pause_mode_the_end_waits_for_a_client_then_runs(
    start: Callable[[str], Server], fake_llm: FakeLLMServer
) -> None:
    server = start("pause")
    # It ends once the test creates `go`: after the client has left.
    wait_for_go = "while [ ! -e go ]; do sleep 0.05; done; echo done"
    fake_llm.enqueue(spawn(wait_for_go), text("Started."), text("It finished."))
    live = await server.manager.create("helper")
    subscription = await live.subscribe()
    await live.submit("run it")
    await until(lambda: contents(server, live.session_id, "assistant")[-1:] == ["Started."])
    subscription.close()
    (server.workdir / "go").touch()
    record = server.processes.list("helper")[0]
    await until(lambda: server.processes.get(record.handle).reported)
    await until(lambda: live.status == "paused")
    assert len(fake_llm.requests) == 2  # nobody was there: no turn ran
    assert live.queued == 1
    again = await live.subscribe()
    await until(lambda: contents(server, live.session_id, "assistant")[-1:] == ["It finished."])
    again.close()


async def test_an_end_reported_again_after_a_crash_reaches_the_session_once(
    start: Callable[[str], Server], fake_llm: FakeLLMServer
) -> None:
    """A crash between storing the message and marking the process reported reports it again
    at the next start: the session already has it, and must not get a second turn for it."""
    server = start("pause")
    fake_llm.enqueue(spawn("echo done"), text("Started."))
    live = await server.manager.create("helper")
    await live.submit("run it")
    record = await eventually_reported(server)
    assert server.processes.reporter is not None

    await server.processes.reporter(record, "done\n")  # as the next start would

    queued = [q for q in live.log.state.queued if str(q.get("content", "")).startswith(FINISHED_MARKER)]
    assert len(queued) == 1


async def test_an_end_whose_message_its_turn_never_stored_is_reported_again(
    start: Callable[[str], Server], fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    """The end starts a turn at once, and the message is held in memory until that turn stores
    it: the process is marked reported only then. A turn that ends before storing it (cancelled
    as it starts here; a kill -9 at that moment is the same) leaves the end to be reported
    again, not lost."""
    server = start("continue")
    server.processes.settings = ProcessSettings(report_retry=0.05)
    store = server.manager.store
    entered, release = asyncio.Event(), asyncio.Event()

    def held(append: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def append_held(session_id: str, events: Any) -> Any:
            batch = events if isinstance(events, list) else [events]
            ended = any(r.ended for r in server.processes.list("helper"))
            if ended and not entered.is_set() and any(e.type == "status_change" for e in batch):
                # the turn the end started, before it stores the message: a slow disk
                entered.set()
                await release.wait()
            return await append(session_id, events)

        return append_held

    store.append = held(store.append)  # type: ignore[method-assign]
    store.append_unsynced = held(store.append_unsynced)  # type: ignore[method-assign]
    # it ends once the test creates `go`: after the turn that started it
    fake_llm.enqueue(spawn("while [ ! -e go ]; do sleep 0.02; done"), text("Started."), text("It ended."))
    live = await server.manager.create("helper")
    await live.submit("run it")
    await until(lambda: contents(server, live.session_id, "assistant")[-1:] == ["Started."])
    (server.workdir / "go").touch()
    await asyncio.wait_for(entered.wait(), timeout=15)
    turn = live._turn  # the turn the end started, held in its append
    assert turn is not None
    cancel = asyncio.create_task(live.cancel())  # the turn ends before its message is stored
    await until(lambda: turn.cancelling() > 0)  # the cancel has reached the turn
    release.set()
    await asyncio.wait_for(cancel, timeout=15)

    await until(lambda: contents(server, live.session_id, "assistant")[-1:] == ["It ended."])
    finished = [c for c in contents(server, live.session_id, "user") if c.startswith(FINISHED_MARKER)]
    assert len(finished) == 1
    [record] = server.processes.list("helper")
    await until(lambda: read_record(tmp_path / "processes" / f"{record.handle}.yaml").reported)


async def eventually_reported(server: Server) -> ProcessRecord:
    await until(lambda: bool(server.processes.list("helper")))
    handle = server.processes.list("helper")[0].handle
    await until(lambda: server.processes.get(handle).reported)
    return server.processes.get(handle)


async def test_spawn_is_decided_by_the_bash_rules(
    start: Callable[[str], Server], fake_llm: FakeLLMServer
) -> None:
    server = start("continue")
    fake_llm.enqueue(spawn("rm -rf notes"), text("Could not."))
    live = await server.manager.create("helper")
    await live.submit("clean up")
    await until(lambda: contents(server, live.session_id, "assistant")[-1:] == ["Could not."])
    results = [e for e in live.log.state.conversation if e.get("role") == "tool"]
    assert "denied by policy: bash rm -rf notes" in str(results[-1].get("content"))
    assert server.processes.list() == []


async def test_spawn_with_wait_returns_the_result_and_no_second_turn(
    start: Callable[[str], Server], fake_llm: FakeLLMServer
) -> None:
    server = start("continue")
    fake_llm.enqueue(spawn("echo quick result", wait="10s"), text("It printed quick result."))
    live = await server.manager.create("helper")
    await live.submit("run it and wait")
    await until(lambda: contents(server, live.session_id, "assistant")[-1:] == ["It printed quick result."])
    results = [e for e in live.log.state.conversation if e.get("role") == "tool"]
    assert "exited with code 0" in str(results[-1].get("content"))
    assert "quick result" in str(results[-1].get("content"))
    await asyncio.sleep(0.3)  # a completion turn would have started by now
    assert not any(c.startswith(FINISHED_MARKER) for c in contents(server, live.session_id, "user"))


async def test_allow_always_on_a_spawn_saves_a_bash_rule_that_bash_obeys_too(
    start: Callable[..., Server], fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    server = start("continue", policy="ask")
    command = "make nightly"
    fake_llm.enqueue(
        spawn(command, wait="5s"),
        text("Ran it."),
        tool_calls([("bash", {"command": command})]),
        text("Ran it again, in the foreground."),
    )
    (server.workdir).mkdir(parents=True, exist_ok=True)
    (server.workdir / "Makefile").write_text("nightly:\n\t@echo built\n")
    live = await server.manager.create("helper")
    await live.submit("run the nightly build")
    broker = server.manager.runtime.approvals
    await until(lambda: broker.pending())
    [pending] = broker.pending()
    assert (pending.tool, pending.invocation) == ("background_process", command)
    broker.decide(pending.call_id, "allow_always")
    await until(lambda: contents(server, live.session_id, "assistant")[-1:] == ["Ran it."])
    policy = (tmp_path / "agents" / "helper" / "policy.yaml").read_text()
    assert f"bash:{command}" in policy
    # The saved rule is a bash rule: the same command through bash runs without asking.
    await live.submit("and once more in the foreground")
    await until(
        lambda: contents(server, live.session_id, "assistant")[-1:] == ["Ran it again, in the foreground."]
    )
    results = [str(e.get("content")) for e in live.log.state.conversation if e.get("role") == "tool"]
    assert "built" in results[-1]
    assert broker.pending() == []
