"""A scheduled task stays bound by its schedule's rules.

1. With `scheduling.tasks_may_schedule` off, a scheduled task's turn may not create schedules; a
   background process it starts carries the schedule, so the `[process finished]` turn its end
   starts may not either (it could before: the task escaped the rule through a process).
2. A schedule runs only in its own agent's sessions: a hand-edited file naming another agent's
   session as its destination is refused when it runs, never delivered there.

The model is a real HTTP server, the calls go through the runtime, the process is a real
subprocess, and runs are delivered by `SessionDelivery` as the server wires it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from duragent.agents.loader import Agent, load_agent
from duragent.config import DuragentConfig
from duragent.processes.completion import FINISHED_MARKER, SessionReporter
from duragent.processes.manager import ProcessManager
from duragent.processes.record import read_record
from duragent.runtime.loop import Runtime
from duragent.runtime.providers import ProviderPool
from duragent.scheduling.delivery import SessionDelivery
from duragent.scheduling.service import Scheduler, SchedulerSettings
from duragent.scheduling.spec import Destination, ScheduleRequest
from duragent.scheduling.store import FileScheduleStore
from duragent.sessions.manager import SessionManager
from duragent.stores.filesystem.sessions import FilesystemSessionStore
from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from tests.integration.test_scheduler import T0, Clock
from tests.waiting import until

pytest_plugins = ["duragent.testing.pytest_plugin"]

AGENT_YAML = """\
apiVersion: duragent/v1alpha1
kind: Agent
metadata:
  name: {name}
spec:
  model:
    provider: openai
    name: gpt-test
    base_url: {url}
  system_prompt: test
  session:
    on_disconnect: continue
  tools:
    builtin: [background_process, schedule]
    policy:
      mode: allow
"""


@dataclass
class Server:
    manager: SessionManager
    processes: ProcessManager
    scheduler: Scheduler
    workdir: Path
    clock: Clock


@pytest.fixture
async def server(tmp_path: Path, fake_llm: FakeLLMServer) -> AsyncIterator[Server]:
    agents: dict[str, Agent] = {}
    for name in ("helper", "other"):
        directory = tmp_path / "agents" / name
        directory.mkdir(parents=True)
        (directory / "agent.yaml").write_text(AGENT_YAML.format(name=name, url=fake_llm.url))
        agents[name] = load_agent(directory, env={"OPENAI_API_KEY": "sk-test"})[0]
    store = FilesystemSessionStore(tmp_path / "sessions", fsync="never")
    providers = ProviderPool({"OPENAI_API_KEY": "sk-test"})
    processes = ProcessManager(tmp_path / "processes")
    workdir = tmp_path / "work"
    runtime = Runtime(provider_for=providers.for_agent, processes=processes, workdir_for=lambda a: workdir)
    manager = SessionManager(store, runtime, DuragentConfig(), agents.__getitem__)
    processes.reporter = SessionReporter(manager)
    schedules = FileScheduleStore(tmp_path / "schedules")
    clock = Clock(T0)
    scheduler = Scheduler(schedules, SessionDelivery(manager), settings=SchedulerSettings(), clock=clock)
    runtime.schedules = scheduler
    await scheduler.start()
    yield Server(manager, processes, scheduler, workdir, clock)
    await scheduler.stop()
    await processes.close()
    await manager.close(grace=0)
    await store.close()
    await providers.close()


def tool_results(server: Server, session_id: str) -> list[str]:
    live = server.manager.live[session_id]
    return [str(m.get("content")) for m in live.log.state.conversation if m.get("role") == "tool"]


async def test_the_turn_a_scheduled_tasks_process_end_starts_may_not_create_schedules(
    server: Server, fake_llm: FakeLLMServer
) -> None:
    live = await server.manager.create("helper")
    request = ScheduleRequest.model_validate({"in": "1h", "task": "start the nightly build"})
    made = await server.scheduler.create(
        request.build(
            "helper",
            destination=Destination(session_id=live.session_id),
            created_by="test",
            now=server.scheduler.clock(),
        )
    )
    go = server.workdir / "go"
    fake_llm.enqueue(
        tool_calls(
            [("background_process", {"action": "spawn", "command": "until [ -f go ]; do sleep 0.05; done"})]
        ),
        text("The build runs."),
        tool_calls([("schedule", {"action": "create", "every": "1m", "task": "start the build again"})]),
        text("Done."),
    )

    run = await asyncio.wait_for(server.scheduler.run_now(made.id), 30)
    assert run.status == "ok", run.error
    (record,) = server.processes.list("helper")
    assert record.scheduled_by == made.id
    saved = read_record(server.processes.folder / f"{record.handle}.yaml")
    assert saved.scheduled_by == made.id  # (a restart still knows whose it is)
    go.write_text("")
    await until(lambda: len(tool_results(server, live.session_id)) >= 2, within=30)

    users = [m for m in live.log.state.conversation if m.get("role") == "user"]
    assert str(users[-1].get("content")).startswith(FINISHED_MARKER)
    refusal = tool_results(server, live.session_id)[-1]
    assert refusal.startswith(f"this turn is scheduled task {made.id}: it may not create schedules")
    assert [s.id for s in (await server.scheduler.store.load_all()).schedules] == [made.id]


async def test_a_schedule_whose_destination_is_another_agents_session_is_refused_when_it_runs(
    server: Server,
) -> None:
    theirs = await server.manager.create("other")
    # A hand-edited file: helper's schedule, pointed at the other agent's session.
    request = ScheduleRequest.model_validate({"every": "1h", "message": "pay the invoice to account 42"})
    made = await server.scheduler.create(
        request.build(
            "helper",
            destination=Destination(session_id=theirs.session_id),
            created_by="hand edit",
            now=server.scheduler.clock(),
        )
    )

    run = await asyncio.wait_for(server.scheduler.run_now(made.id), 30)

    assert run.status == "error"
    assert run.error is not None
    assert "destination.session_id" in run.error
    assert theirs.session_id in run.error
    assert "'other'" in run.error
    assert run.session_id is None
    notifications = await theirs.log.store.read(theirs.session_id)
    assert not [e for e in notifications if e.type == "notification"]

    # Its own slot fails the same way, and every later one would: it is paused, with the reason.
    server.clock.now = T0 + timedelta(hours=1)
    server.scheduler.poke()
    await until(lambda: server.scheduler.schedules[made.id].status == "paused", within=30)
    runs = await server.scheduler.runs(made.id)
    assert [r.status for r in runs if r.status != "started"] == ["error", "error"]
    notifications = await theirs.log.store.read(theirs.session_id)
    assert not [e for e in notifications if e.type == "notification"]
