"""The agentic loop against a real fake LLM server: streaming, tools, policy, approvals, failures."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from pathlib import Path
from typing import cast

import pytest

from duragent.agents.loader import Agent, load_agent
from duragent.llm.base import Provider
from duragent.llm.types import Finish, LLMRequest, StreamChunk
from duragent.llm.types import TextDelta as LLMTextDelta
from duragent.runtime.approvals import ApprovalBroker, ApprovalDecision
from duragent.runtime.events import (
    ApprovalRequired,
    ApprovalResolved,
    RuntimeEvent,
    TextDelta,
    ToolCallFinished,
    TurnFailed,
    TurnFinished,
    TurnStarted,
)
from duragent.runtime.guarded_files import GuardedFiles
from duragent.runtime.loop import STARTING_AT_ONCE, Runtime, drain
from duragent.runtime.providers import ProviderPool
from duragent.sessions.log import SessionLog
from duragent.stores.base import Change, SessionReadOptions
from duragent.stores.filesystem.memory import FilesystemMemoryStore
from duragent.stores.filesystem.sessions import FilesystemSessionStore
from duragent.testing.fake_llm import FakeLLMServer, broken_stream, delay, error, text, tool_calls
from duragent.tools import protected
from tests.durability import DurabilityWaits, HeldLogFsync
from tests.waiting import Held, until

pytest_plugins = ["duragent.testing.pytest_plugin"]


def rendezvous(mine: Path, other: Path) -> str:
    """A one-line command (allowed by the agent's policy) that marks `mine`, then waits up to
    20 s for `other`: it prints "met" or "alone"."""
    probe = (
        f"import pathlib, time; pathlib.Path({json.dumps(str(mine))}).touch(); "
        f"other = pathlib.Path({json.dumps(str(other))}); "
        "[time.sleep(0.05) for _ in range(400) if not other.exists()]; "
        'print("met" if other.exists() else "alone")'
    )
    return f"python3 -c '{probe}'"


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
  system_prompt: You are a test agent. Today is {{{{date}}}}.
  memory: {{enabled: true}}
  tools:
    builtin: [bash, memory, write_file]
    policy:
      mode: ask
      allow: ["memory", "bash:echo *", "bash:python3 *"]
      deny: ["bash:rm *"]
"""


@pytest.fixture
def agent(tmp_path: Path, fake_llm: FakeLLMServer) -> Agent:
    directory = tmp_path / "agents" / "helper"
    directory.mkdir(parents=True)
    (directory / "agent.yaml").write_text(AGENT_YAML.format(url=fake_llm.url))
    loaded, _ = load_agent(directory, env={"OPENAI_API_KEY": "sk-test"})
    return loaded


@pytest.fixture
def memory(tmp_path: Path) -> FilesystemMemoryStore:
    return FilesystemMemoryStore(tmp_path / "memory")


@pytest.fixture
async def providers() -> AsyncIterator[ProviderPool]:
    pool = ProviderPool({"OPENAI_API_KEY": "sk-test"})
    yield pool
    await pool.close()


@pytest.fixture
def runtime(memory: FilesystemMemoryStore, providers: ProviderPool) -> Runtime:
    return Runtime(provider_for=providers.for_agent, memory=memory)


async def stored_types(session: SessionLog) -> list[str]:
    events = await session.store.read(session.session_id, SessionReadOptions(after_seq=1))
    return [e.type for e in events]


async def test_reply_is_streamed_and_stored(
    fake_llm: FakeLLMServer, agent: Agent, session: SessionLog, runtime: Runtime
) -> None:
    fake_llm.enqueue(text("Hello there, friend", chunks=3, usage=(12, 4), chunk_delay=0.02))
    events = await drain(runtime.run_turn(session, agent, "hi"))
    assert isinstance(events[0], TurnStarted)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Hello there, friend"
    # Pieces that arrive in one network read are joined (a loaded machine reads late): 1 to 3 deltas.
    assert 1 <= len([e for e in events if isinstance(e, TextDelta)]) <= 3
    finished = events[-1]
    assert isinstance(finished, TurnFinished)
    assert finished.usage == {"input_tokens": 12, "output_tokens": 4}
    assert await stored_types(session) == ["user_message", "assistant_message"]
    sent = fake_llm.requests[0].body["messages"]
    assert sent[0]["role"] == "system"
    assert "You are a test agent" in sent[0]["content"]
    assert sent[-1] == {"role": "user", "content": "hi"}


async def test_a_tool_call_runs_and_its_result_goes_back_to_the_model(
    fake_llm: FakeLLMServer,
    agent: Agent,
    session: SessionLog,
    runtime: Runtime,
    memory: FilesystemMemoryStore,
) -> None:
    fake_llm.enqueue(
        tool_calls(
            [("memory", {"action": "remember", "content": "likes green tea", "section": "preference"})]
        ),
        text("Noted."),
    )
    events = await drain(runtime.run_turn(session, agent, "remember that I like green tea"))
    finished = [e for e in events if isinstance(e, ToolCallFinished)]
    assert finished
    assert finished[0].ok
    assert isinstance(events[-1], TurnFinished)
    assert events[-1].content == "Noted."
    today = await memory.read_day("helper", (await memory.days("helper"))[0])
    assert today is not None
    assert "## Preferences Learned\n- likes green tea" in today
    assert await stored_types(session) == [
        "user_message",
        "assistant_message",
        "tool_call",
        "tool_result",
        "assistant_message",
    ]
    second = fake_llm.requests[1].body["messages"]
    assert second[-1]["role"] == "tool"
    assert second[-2]["tool_calls"][0]["function"]["name"] == "memory"


async def test_tools_run_only_once_the_user_message_before_them_is_durable(
    fake_llm: FakeLLMServer,
    agent: Agent,
    runtime: Runtime,
    memory: FilesystemMemoryStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = FilesystemSessionStore(tmp_path / "durable-sessions", fsync="turn")
    session = await SessionLog.create(store, agent="helper")
    held, waits = HeldLogFsync(monkeypatch), DurabilityWaits(monkeypatch)
    fake_llm.enqueue(
        tool_calls([("memory", {"action": "remember", "content": "likes tea", "section": "preference"})]),
        text("Noted."),
    )
    held.armed = True

    turn = asyncio.ensure_future(drain(runtime.run_turn(session, agent, "remember that I like tea")))
    await until(lambda: waits.count >= 1)  # the model asked for the tool; the turn waits for the disk
    assert len(fake_llm.requests) == 1
    assert await memory.days("helper") == []  # the tool has not run
    held.release.set()
    events = await turn

    assert isinstance(events[-1], TurnFinished)
    assert held.durable.is_set()
    assert await memory.days("helper")  # it ran once the message was on disk
    await store.close()


async def test_parallel_tool_calls_run_concurrently(
    fake_llm: FakeLLMServer, agent: Agent, session: SessionLog, runtime: Runtime, tmp_path: Path
) -> None:
    a, b = tmp_path / "a-started", tmp_path / "b-started"
    fake_llm.enqueue(
        tool_calls([("bash", {"command": rendezvous(a, b)}), ("bash", {"command": rendezvous(b, a)})]),
        text("both done"),
    )
    events = await drain(runtime.run_turn(session, agent, "run both"))
    results = [e for e in events if isinstance(e, ToolCallFinished)]
    # Each call waits for the other to have started: run one after the other, the first would
    # wait alone (however slow the machine, a real overlap is a meeting).
    assert [r.content.split()[0] for r in results] == ["met", "met"]


async def test_denied_tool_call_is_reported_to_the_model_not_run(
    fake_llm: FakeLLMServer, agent: Agent, session: SessionLog, runtime: Runtime, tmp_path: Path
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    fake_llm.enqueue(tool_calls([("bash", {"command": f"rm {victim}"})]), text("I could not."))
    events = await drain(runtime.run_turn(session, agent, "delete it"))
    result = next(e for e in events if isinstance(e, ToolCallFinished))
    assert not result.ok
    assert "denied by policy" in result.content
    assert victim.exists()


async def turn_answering(
    runtime: Runtime,
    broker: ApprovalBroker,
    session: SessionLog,
    agent: Agent,
    content: str,
    decision: ApprovalDecision,
) -> list[RuntimeEvent]:
    """Run a turn, answering each approval it asks for with `decision`; its events."""
    seen: list[RuntimeEvent] = []
    async for event in runtime.run_turn(session, agent, content):
        seen.append(event)
        if isinstance(event, ApprovalRequired):
            assert [p.call_id for p in broker.pending()] == [event.call_id]
            broker.decide(event.call_id, decision)
    return seen


async def test_ask_waits_for_a_decision_and_allow_always_is_saved(
    fake_llm: FakeLLMServer,
    agent: Agent,
    session: SessionLog,
    memory: FilesystemMemoryStore,
    providers: ProviderPool,
) -> None:
    broker = ApprovalBroker()
    runtime = Runtime(
        provider_for=providers.for_agent,
        memory=memory,
        approvals=broker,
    )
    fake_llm.enqueue(tool_calls([("bash", {"command": "pwd"})]), text("done"))
    seen = await turn_answering(runtime, broker, session, agent, "where are you?", "allow_always")
    resolved = next(e for e in seen if isinstance(e, ApprovalResolved))
    assert resolved.decision == "allow_always"
    result = next(e for e in seen if isinstance(e, ToolCallFinished))
    assert result.ok
    # tools run in the agent's own working directory, never its definition folder
    assert result.content.strip() == str(agent.directory.parent.parent / "work" / "helper")
    policy_text = (agent.directory / "policy.yaml").read_text()
    assert "bash:pwd" in policy_text
    assert "approval_required" in await stored_types(session)
    assert "approval_decision" in await stored_types(session)


async def test_allow_always_covers_the_same_call_again_in_its_batch_and_in_the_turns_next_step(
    fake_llm: FakeLLMServer,
    agent: Agent,
    session: SessionLog,
    memory: FilesystemMemoryStore,
    providers: ProviderPool,
) -> None:
    """A person who chose "always" is not asked about that call again, from the next one on."""
    broker = ApprovalBroker()
    runtime = Runtime(provider_for=providers.for_agent, memory=memory, approvals=broker)
    fake_llm.enqueue(
        tool_calls([("bash", {"command": "pwd"}), ("bash", {"command": "pwd"})]),
        tool_calls([("bash", {"command": "pwd"})]),
        text("done"),
    )

    seen = await turn_answering(runtime, broker, session, agent, "where are you, thrice?", "allow_always")

    assert [e.decision for e in seen if isinstance(e, ApprovalResolved)] == ["allow_always"]
    finished = [e for e in seen if isinstance(e, ToolCallFinished)]
    assert [e.ok for e in finished] == [True, True, True]
    assert (await stored_types(session)).count("approval_required") == 1


async def test_a_work_folder_removed_between_turns_is_made_again_for_the_next_tool_call(
    fake_llm: FakeLLMServer, agent: Agent, session: SessionLog, runtime: Runtime
) -> None:
    work = agent.directory.parent.parent / "work" / "helper"
    fake_llm.enqueue(tool_calls([("bash", {"command": "echo first"})]), text("done"))
    await drain(runtime.run_turn(session, agent, "run it"))
    assert work.is_dir()
    work.rmdir()
    fake_llm.enqueue(text("just talking"))
    await drain(runtime.run_turn(session, agent, "hello"))
    fake_llm.enqueue(tool_calls([("bash", {"command": "echo again"})]), text("done"))
    events = await drain(runtime.run_turn(session, agent, "run it again"))
    result = next(e for e in events if isinstance(e, ToolCallFinished))
    assert (result.ok, result.content.strip()) == (True, "again")
    assert work.is_dir()


async def test_a_work_folder_that_cannot_be_made_fails_the_calls_and_the_turn_goes_on(
    fake_llm: FakeLLMServer, agent: Agent, session: SessionLog, runtime: Runtime
) -> None:
    work = agent.directory.parent.parent / "work" / "helper"
    work.parent.mkdir(parents=True, exist_ok=True)
    work.write_text("a file where the work folder goes")
    fake_llm.enqueue(tool_calls([("bash", {"command": "echo hi"})]), text("the folder is broken"))
    events = await drain(runtime.run_turn(session, agent, "run it"))
    result = next(e for e in events if isinstance(e, ToolCallFinished))
    assert not result.ok
    assert str(work) in result.content
    assert "cannot be made" in result.content
    # every call answered, and the model told: nothing is left open for the next turn to close
    assert isinstance(events[-1], TurnFinished)
    assert (await stored_types(session))[-3:] == ["tool_call", "tool_result", "assistant_message"]


async def test_allow_always_of_a_command_holding_a_secret_runs_once_and_is_not_saved(
    fake_llm: FakeLLMServer,
    agent: Agent,
    session: SessionLog,
    memory: FilesystemMemoryStore,
    providers: ProviderPool,
) -> None:
    """policy.yaml is committed to git: a pattern with a key in it would put the key in history."""
    from duragent.secrets import SecretGuard

    broker = ApprovalBroker()
    runtime = Runtime(
        provider_for=providers.for_agent, memory=memory, approvals=broker, guard=SecretGuard({})
    )
    command = "echo sk-proj-abcdefghijklmnopqrstuvwx0123"
    fake_llm.enqueue(tool_calls([("bash", {"command": command})]), text("done"))
    seen = await turn_answering(runtime, broker, session, agent, "call the API", "allow_always")

    result = next(e for e in seen if isinstance(e, ToolCallFinished))
    assert result.ok
    policy = agent.directory / "policy.yaml"
    assert not policy.exists() or "sk-proj-" not in policy.read_text()


async def test_unanswered_approval_is_denied_after_its_timeout(
    fake_llm: FakeLLMServer,
    agent: Agent,
    session: SessionLog,
    memory: FilesystemMemoryStore,
    providers: ProviderPool,
) -> None:
    from datetime import timedelta

    runtime = Runtime(
        provider_for=providers.for_agent,
        memory=memory,
        approvals=ApprovalBroker(default_timeout=timedelta(seconds=0.2)),
    )
    fake_llm.enqueue(tool_calls([("bash", {"command": "pwd"})]), text("ok"))
    events = await drain(runtime.run_turn(session, agent, "where?"))
    resolved = next(e for e in events if isinstance(e, ApprovalResolved))
    assert (resolved.decision, resolved.reason) == ("deny", "timeout")
    assert not next(e for e in events if isinstance(e, ToolCallFinished)).ok


async def test_provider_error_fails_the_turn_and_the_session_stays_usable(
    fake_llm: FakeLLMServer, agent: Agent, session: SessionLog, runtime: Runtime
) -> None:
    fake_llm.enqueue(error(401, "bad key"))
    events = await drain(runtime.run_turn(session, agent, "hello"))
    failed = events[-1]
    assert isinstance(failed, TurnFailed)
    assert failed.code == "llm_error"
    assert "401 from openai" in failed.message
    assert "OPENAI_API_KEY" in failed.message
    fake_llm.enqueue(text("back again"))
    events = await drain(runtime.run_turn(session, agent, "hello again"))
    assert isinstance(events[-1], TurnFinished)
    assert events[-1].content == "back again"


async def test_a_broken_stream_keeps_the_partial_reply(
    fake_llm: FakeLLMServer, agent: Agent, session: SessionLog, runtime: Runtime
) -> None:
    fake_llm.enqueue(broken_stream(after_chunks=2, content="one two three four", chunks=4))
    events = await drain(runtime.run_turn(session, agent, "talk"))
    assert isinstance(events[-1], TurnFailed)
    stored = await session.store.read(
        session.session_id, SessionReadOptions(types=frozenset({"assistant_message"}))
    )
    assert stored[0].payload["partial"] is True
    assert stored[0].payload["content"]


async def test_the_step_limit_stops_a_runaway_loop(
    fake_llm: FakeLLMServer,
    agent: Agent,
    session: SessionLog,
    memory: FilesystemMemoryStore,
    providers: ProviderPool,
) -> None:
    runtime = Runtime(provider_for=providers.for_agent, memory=memory, max_steps=3)
    for _ in range(3):
        fake_llm.enqueue(tool_calls([("bash", {"command": "echo again"})]))
    events = await drain(runtime.run_turn(session, agent, "loop"))
    assert isinstance(events[-1], TurnFailed)
    assert events[-1].code == "max_steps"


async def cancelled_once_it_yields(
    runtime: Runtime,
    session: SessionLog,
    agent: Agent,
    content: str,
    kind: type[RuntimeEvent],
    within: float,
) -> None:
    """Run a turn until it yields an event of `kind` (within `within` s), then cancel it and see
    it end cancelled."""
    seen = asyncio.Event()

    async def turn() -> None:
        async for event in runtime.run_turn(session, agent, content):
            if isinstance(event, kind):
                seen.set()

    running = asyncio.create_task(turn())
    await asyncio.wait_for(seen.wait(), within)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running


async def test_cancellation_mid_stream_closes_the_connection_and_keeps_partial_text(
    fake_llm: FakeLLMServer, agent: Agent, session: SessionLog, runtime: Runtime
) -> None:
    fake_llm.enqueue(text("a b c d e f g h", chunks=8, chunk_delay=0.2))
    await cancelled_once_it_yields(runtime, session, agent, "go slowly", TextDelta, within=5)
    await fake_llm.wait_for_disconnect(within=5)
    stored = await session.store.read(
        session.session_id, SessionReadOptions(types=frozenset({"assistant_message"}))
    )
    assert stored
    assert stored[-1].payload["partial"] is True


async def test_an_interrupted_tool_call_gets_a_result_and_the_turn_continues(
    fake_llm: FakeLLMServer, agent: Agent, session: SessionLog, runtime: Runtime
) -> None:
    await session.append("user_message", {"content": "do it", "turn": 1})
    await session.append(
        "assistant_message",
        {"content": "", "message_id": "msg_1", "tool_calls": [{"id": "c1", "name": "bash", "arguments": {}}]},
    )
    fake_llm.enqueue(delay(0, text("resumed")))
    events = await drain(runtime.run_turn(session, agent, None))
    assert isinstance(events[-1], TurnFinished)
    assert events[-1].content == "resumed"
    results = await session.store.read(
        session.session_id, SessionReadOptions(types=frozenset({"tool_result"}))
    )
    assert results[0].payload["call_id"] == "c1"
    assert results[0].payload["ok"] is False
    assert "interrupted" in results[0].payload["content"]


async def test_turns_starting_together_do_not_wait_for_each_others_model(
    tmp_path: Path, fake_llm: FakeLLMServer, agent: Agent, runtime: Runtime
) -> None:
    # Turns are admitted a few at a time up to their model call, not through it: all eight
    # requests reach a model that takes 2 s to answer before it has answered any of them.
    store = FilesystemSessionStore(tmp_path / "many", fsync="never")
    sessions = [await SessionLog.create(store, agent="helper") for _ in range(8)]
    fake_llm.enqueue(*(text(f"reply {n}", delay=2.0) for n in range(8)))
    turns = [asyncio.create_task(drain(runtime.run_turn(s, agent, "hi"))) for s in sessions]
    for _ in range(150):  # up to 1.5 s, well before the first answer
        if len(fake_llm.requests) == 8:
            break
        await asyncio.sleep(0.01)
    assert len(fake_llm.requests) == 8
    assert not any(turn.done() for turn in turns)
    results = await asyncio.gather(*turns)
    assert sorted(events[-1].content for events in results) == [f"reply {n}" for n in range(8)]  # type: ignore[union-attr]
    await store.close()


class HeldSend:
    """A provider whose requests are "sent" only when the test says so: how many turns are between
    asking for a model call and having sent it."""

    name = "held"

    def __init__(self) -> None:
        self.sending = 0
        self.most_sending = 0
        self.release = asyncio.Event()

    async def stream(
        self, request: LLMRequest, *, sent: Callable[[], None] | None = None
    ) -> AsyncGenerator[StreamChunk, None]:
        self.sending += 1
        self.most_sending = max(self.most_sending, self.sending)
        await self.release.wait()
        self.sending -= 1
        assert sent is not None
        sent()
        yield LLMTextDelta("ok")
        yield Finish("stop")


@contextlib.asynccontextmanager
async def turns_through(
    provider: HeldSend, sending_hold: float, tmp_path: Path, agent: Agent, memory: FilesystemMemoryStore
) -> AsyncIterator[list[asyncio.Task[list[RuntimeEvent]]]]:
    """Twice `STARTING_AT_ONCE` turns started together through `provider`; each must finish
    once the test releases the provider."""
    runtime = Runtime(
        provider_for=lambda _agent: cast(Provider, provider), memory=memory, sending_hold=sending_hold
    )
    store = FilesystemSessionStore(tmp_path / "many", fsync="never")
    sessions = [await SessionLog.create(store, agent="helper") for _ in range(STARTING_AT_ONCE * 2)]
    turns = [asyncio.create_task(drain(runtime.run_turn(s, agent, "hi"))) for s in sessions]
    yield turns
    provider.release.set()
    results = await asyncio.wait_for(asyncio.gather(*turns), 10)
    assert all(isinstance(events[-1], TurnFinished) for events in results)
    await store.close()


async def test_a_turn_keeps_its_place_among_starting_turns_until_its_request_is_sent(
    tmp_path: Path, agent: Agent, memory: FilesystemMemoryStore
) -> None:
    # Making the connection and writing the request is part of starting a turn: 200 turns that
    # connected outside it did so in the same few turns of the event loop, and every reply
    # already streaming waited for them.
    provider = HeldSend()
    async with turns_through(provider, 60, tmp_path, agent, memory):
        await until(lambda: provider.sending == STARTING_AT_ONCE)
        # The others wait their turn (a turn's start is a few loop turns; give them plenty).
        for _ in range(50):
            await asyncio.sleep(0)
        assert provider.most_sending == STARTING_AT_ONCE
    assert provider.most_sending == STARTING_AT_ONCE


async def test_a_request_slow_to_send_gives_its_place_up_after_the_sending_hold(
    tmp_path: Path, agent: Agent, memory: FilesystemMemoryStore
) -> None:
    # A new connection to a distant provider (a TLS handshake) is a wait on the network, not
    # work: after `sending_hold` the next turns start while it goes on.
    provider = HeldSend()
    async with turns_through(provider, 0.01, tmp_path, agent, memory):
        await until(lambda: provider.sending == STARTING_AT_ONCE * 2)


async def test_turns_that_fail_before_the_model_leave_room_for_the_next(
    fake_llm: FakeLLMServer, agent: Agent, runtime: Runtime, session: SessionLog
) -> None:
    # A turn that fails while starting (here: a broken policy.yaml) must give back its place
    # among the starting turns, or the server would stop starting turns after a few failures.
    policy_file = agent.directory / "policy.yaml"
    policy_file.write_text("mode: [not, a, mode]\n")
    failures = [await drain(runtime.run_turn(session, agent, f"try {n}")) for n in range(10)]
    assert all(isinstance(events[-1], TurnFailed) for events in failures)
    assert all(events[-1].code == "agent_invalid" for events in failures)  # type: ignore[union-attr]
    policy_file.unlink()
    fake_llm.enqueue(text("still here"))
    events = await asyncio.wait_for(drain(runtime.run_turn(session, agent, "and now?")), 5)
    assert isinstance(events[-1], TurnFinished)
    assert events[-1].content == "still here"


async def test_git_run_by_the_agent_does_not_find_the_data_repository_its_work_folder_is_in(
    fake_llm: FakeLLMServer, agent: Agent, session: SessionLog, runtime: Runtime, tmp_path: Path
) -> None:
    """With `bash:git *` allowed, the data repository (every agent's memory and sessions, its
    config, aliases and hooks) would otherwise be one `git` command away from the work folder."""
    import subprocess

    await asyncio.to_thread(
        subprocess.run, ["git", "init", "-q", str(tmp_path)], check=True
    )  # the data directory
    probe = (
        "import subprocess; "
        "found = subprocess.run(['git', 'rev-parse', '--show-toplevel'], capture_output=True, text=True); "
        "print(found.stdout or found.stderr)"
    )
    fake_llm.enqueue(tool_calls([("bash", {"command": f'python3 -c "{probe}"'})]), text("done"))

    events = await drain(runtime.run_turn(session, agent, "where is your repository?"))

    (finished,) = [e for e in events if isinstance(e, ToolCallFinished)]
    assert finished.ok
    assert "not a git repository" in finished.content


@pytest.mark.parametrize(
    "call",
    [
        ("bash", {"command": "rm -rf /tmp/nothing-here"}),  # denied by the policy
        ("no_such_tool", {}),  # a tool the agent does not have
    ],
)
async def test_a_batch_in_which_no_call_runs_leaves_the_agents_files_alone(
    fake_llm: FakeLLMServer,
    agent: Agent,
    session: SessionLog,
    runtime: Runtime,
    call: tuple[str, dict[str, str]],
) -> None:
    (agent.directory / "SYSTEM_PROMPT.md").write_text("You help.\n")
    (agent.directory / "policy.yaml").write_text("mode: ask\n")
    files = {path.name: path.read_bytes() for path in agent.directory.iterdir()}
    fake_llm.enqueue(tool_calls([call]), text("could not"))

    events = await drain(runtime.run_turn(session, agent, "try it"))

    assert isinstance(events[-1], TurnFinished)
    assert {path.name: path.read_bytes() for path in agent.directory.iterdir()} == files


async def test_a_call_a_person_denies_leaves_the_agents_files_alone(
    fake_llm: FakeLLMServer, agent: Agent, session: SessionLog, providers: ProviderPool
) -> None:
    approvals = ApprovalBroker()
    runtime = Runtime(provider_for=providers.for_agent, approvals=approvals)
    files = {path.name: path.read_bytes() for path in agent.directory.iterdir()}
    fake_llm.enqueue(tool_calls([("bash", {"command": "touch asked.txt"})]), text("as you wish"))

    async def deny_when_asked() -> None:
        await until(lambda: approvals.pending(session.session_id))
        approvals.decide(approvals.pending(session.session_id)[0].call_id, "deny")

    denier = asyncio.create_task(deny_when_asked())
    events = await drain(runtime.run_turn(session, agent, "touch it"))
    await denier

    assert isinstance(events[-1], TurnFinished)
    assert {path.name: path.read_bytes() for path in agent.directory.iterdir()} == files
    # the model (and whoever reads the result) learns who said no: not the policy, a person
    [denied] = [event for event in events if isinstance(event, ToolCallFinished)]
    assert denied.content == "denied by the person asked: bash touch asked.txt"


@pytest.mark.parametrize("held_work", ["the walk before the batch", "the walk after it", "the path check"])
async def test_a_batchs_guard_work_never_holds_up_another_sessions_turn(
    fake_llm: FakeLLMServer,
    agent: Agent,
    session: SessionLog,
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
    held_work: str,
) -> None:
    """The snapshot of the guarded files (a walk as long as a tool folder is big) and the allowed
    command's path check (a glob matched over the work folder) run off the event loop."""
    if held_work == "the path check":
        held = Held(protected.reached_outside_workdir)
        monkeypatch.setattr(protected, "reached_outside_workdir", held)
    else:
        held = Held(GuardedFiles.snapshot, nth=1 if held_work == "the walk before the batch" else 2)
        monkeypatch.setattr(GuardedFiles, "snapshot", lambda self: held(self))
    other = await SessionLog.create(session.store, agent="helper")
    fake_llm.enqueue(tool_calls([("bash", {"command": "echo hi"})]))
    busy = asyncio.create_task(drain(runtime.run_turn(session, agent, "say hi")))
    await until(held.entered.is_set)

    fake_llm.enqueue(text("meanwhile"))
    events = await drain(runtime.run_turn(other, agent, "hello"))

    assert isinstance(events[-1], TurnFinished)
    assert events[-1].content == "meanwhile"
    assert not held.returned.is_set()  # the other session's turn ended while that work was held
    fake_llm.enqueue(text("said hi"))
    held.release.set()
    finished = await busy
    assert isinstance(finished[-1], TurnFinished)
    assert finished[-1].content == "said hi"
    assert [e.content for e in finished if isinstance(e, ToolCallFinished)] == ["hi"]


async def test_a_batch_of_tools_that_change_no_guarded_file_takes_no_snapshot(
    fake_llm: FakeLLMServer,
    agent: Agent,
    session: SessionLog,
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    walks: list[Path] = []
    walk = GuardedFiles.snapshot
    monkeypatch.setattr(GuardedFiles, "snapshot", lambda self: walks.append(self.data_dir) or walk(self))
    fake_llm.enqueue(
        tool_calls([("memory", {"action": "remember", "content": "likes tea", "section": "preference"})]),
        text("Noted."),
    )

    await drain(runtime.run_turn(session, agent, "remember that I like tea"))

    assert walks == []
    fake_llm.enqueue(tool_calls([("bash", {"command": "echo hi"})]), text("said hi"))
    await drain(runtime.run_turn(session, agent, "say hi"))
    assert len(walks) == 2  # before the batch and after it


async def test_a_turn_cancelled_while_its_unasked_calls_run_still_has_their_change_undone(
    fake_llm: FakeLLMServer, agent: Agent, session: SessionLog, runtime: Runtime, tmp_path: Path
) -> None:
    extra, started = agent.directory / "extra.txt", tmp_path / "started"
    code = (
        f'import pathlib, time; pathlib.Path({json.dumps(str(extra))}).write_text("mine"); '
        f"pathlib.Path({json.dumps(str(started))}).touch(); time.sleep(30)"
    )
    fake_llm.enqueue(tool_calls([("bash", {"command": f"python3 -c '{code}'"})]))
    turn = asyncio.create_task(drain(runtime.run_turn(session, agent, "write it")))
    await until(started.exists)
    assert extra.exists()

    turn.cancel()
    with pytest.raises(asyncio.CancelledError):
        await turn

    await until(lambda: not extra.exists())


async def test_a_tool_call_stopped_by_a_cancel_records_how_long_it_ran(
    fake_llm: FakeLLMServer, agent: Agent, session: SessionLog, runtime: Runtime, tmp_path: Path
) -> None:
    started = tmp_path / "started"
    code = f"import pathlib, time; pathlib.Path({json.dumps(str(started))}).touch(); time.sleep(30)"
    fake_llm.enqueue(tool_calls([("bash", {"command": f"python3 -c '{code}'"})]))
    began = time.monotonic()
    turn = asyncio.create_task(drain(runtime.run_turn(session, agent, "wait a while")))
    await until(started.exists)  # (python3 took some milliseconds to start and get here)

    turn.cancel()
    with pytest.raises(asyncio.CancelledError):
        await turn
    ended = time.monotonic()

    results = await session.store.read(
        session.session_id, SessionReadOptions(types=frozenset({"tool_result"}))
    )
    assert [r.payload["content"] for r in results] == ["cancelled: the turn was cancelled"]
    ran = results[0].payload["duration_ms"]
    assert isinstance(ran, int)
    assert 0 < ran <= (ended - began) * 1000


async def test_a_tool_call_cancelled_while_a_person_was_asked_ran_0_ms(
    fake_llm: FakeLLMServer,
    agent: Agent,
    session: SessionLog,
    memory: FilesystemMemoryStore,
    providers: ProviderPool,
) -> None:
    runtime = Runtime(provider_for=providers.for_agent, memory=memory, approvals=ApprovalBroker())
    fake_llm.enqueue(tool_calls([("bash", {"command": "pwd"})]))  # not allowed: a person is asked
    await cancelled_once_it_yields(runtime, session, agent, "where are you?", ApprovalRequired, within=10)

    results = await session.store.read(
        session.session_id, SessionReadOptions(types=frozenset({"tool_result"}))
    )
    assert [(r.payload["content"], r.payload["duration_ms"]) for r in results] == [
        ("cancelled: the turn was cancelled", 0)
    ]


async def test_an_approved_change_is_reported_as_the_agents_when_the_turn_is_cancelled_after_it(
    fake_llm: FakeLLMServer,
    agent: Agent,
    session: SessionLog,
    memory: FilesystemMemoryStore,
    providers: ProviderPool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A cancel landing while the guard looks at what an approved batch changed must not lose its
    report: without it the edit watcher commits the agent's change as the person's."""
    changes: list[Change] = []
    broker = ApprovalBroker()
    runtime = Runtime(
        provider_for=providers.for_agent, memory=memory, approvals=broker, on_change=changes.append
    )
    finish = Held(GuardedFiles.finish)
    monkeypatch.setattr(
        GuardedFiles, "finish", lambda guard, before, *, undo: finish(guard, before, undo=undo)
    )
    target = agent.directory / "approved.txt"
    fake_llm.enqueue(tool_calls([("bash", {"command": f"touch {target}"})]), text("done"))
    turn = asyncio.create_task(turn_answering(runtime, broker, session, agent, "touch it", "allow_once"))
    await until(finish.entered.is_set)

    turn.cancel()
    finish.release.set()
    with pytest.raises(asyncio.CancelledError):
        await turn

    await until(lambda: any(c.summary == "changed by a tool call" for c in changes))
    assert target.exists()
