"""The agentic loop: one turn of a session, from the user's message to the final reply.

Every step is appended to the session log before the next begins (user message, each
assistant message with its tool calls, each tool result), so a crash resumes from the last
durable step: `run_turn(log, agent, None)` continues a turn that stopped midway.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from duragent.agents.loader import Agent
from duragent.agents.spec import AgentSpec, ModelSpec, WebSearchSpec
from duragent.errors import DuragentError, Problem
from duragent.file_stamps import Stamp, settled, stamp
from duragent.ids import new_id
from duragent.llm.base import Provider
from duragent.llm.errors import ContextTooLong, ProviderError, StreamError, StreamTimeout
from duragent.llm.types import (
    Finish,
    LLMRequest,
    Retrying,
    TextDelta,
    ToolCall,
    ToolCallComplete,
    ToolDefinition,
    Usage,
)
from duragent.mcp.naming import is_numbered
from duragent.processes.record import finished_process_of
from duragent.runtime.approvals import ApprovalBroker, ApprovalOutcome, changes_for_answer
from duragent.runtime.events import (
    ApprovalRequired,
    ApprovalResolved,
    ModelRetrying,
    Notification,
    RuntimeEvent,
    ToolCallFinished,
    ToolCallStarted,
    TurnFailed,
    TurnFinished,
    TurnPaused,
    TurnStarted,
)
from duragent.runtime.events import TextDelta as TextEvent
from duragent.scheduling.spec import scheduled_task_of
from duragent.sessions.log import SessionLog
from duragent.sessions.state import SessionState
from duragent.stores.base import ArtifactStore, Change, ChangeListener, MemoryStore, ignore_changes, utcnow
from duragent.tools.base import InvalidToolArguments, ToolContext, ToolResult
from duragent.tools.bash import CliTool
from duragent.tools.workdir import prepare_workdir

# What only a turn needs (the context, the policy, skills, tool folders, the builtin tools'
# registry: duragent.runtime.context, .policy, .memory_context, .guarded_files, duragent.skills.*,
# duragent.tools.folders, .registry, .protected, .web_search, .skill) is imported in the methods
# that use it, and the Runtime's caches of it are made at their first use: a starting server does
# not load it before /readyz, the first turn does.
if TYPE_CHECKING:
    from duragent.mcp.hub import McpHub
    from duragent.mcp.tools import McpTool
    from duragent.processes.manager import ProcessManager
    from duragent.runtime.context import AssembledContext, ToolTokens
    from duragent.runtime.guarded_files import GuardedFiles
    from duragent.runtime.policy import PolicyCache, ToolPolicy
    from duragent.scheduling.service import Scheduler
    from duragent.secrets import SecretGuard
    from duragent.skills.discovery import ProblemLog, SkillCache, SkillSet
    from duragent.tools.registry import AnyTool

log = logging.getLogger(__name__)

DEFAULT_MAX_STEPS = 20
#: How many times a step asks again with a smaller context when the model says it is too long.
CONTEXT_SHRINKS = 2
INTERRUPTED = "interrupted: the turn stopped before this tool call finished"
CANCELLED = "cancelled: the turn was cancelled"
#: The error code of a turn that could not start because the agent's files do not load.
AGENT_INVALID = "agent_invalid"
_SESSION_FOLDERS_KEPT = 512
#: Builtin tools that change no guarded file (they read, or write only memory, artifacts and
#: schedules, where their store puts them): a batch of only these needs no snapshot of them.
_WRITES_NOTHING_GUARDED = frozenset(
    {
        "read_file",
        "list_files",
        "artifact_get",
        "artifact_list",
        "artifact_put",
        "memory",
        "schedule",
        "notify_user",
        "skill",
        "session",
        "web_fetch",
        "web_search",
        "reload_tools",
    }
)


@dataclass
class _StepReply:
    """What one model call said: its text, tool calls, usage, and whether it was cut off."""

    text: list[str] = field(default_factory=list)
    calls: list[ToolCall] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=dict)
    truncated: bool = False


@dataclass
class TurnControl:
    """Lets another task ask a running turn to pause at its next safe point."""

    pause_requested: bool = False
    pause_reason: str = ""
    #: Set when the turn is not to wait for a person's answer any more (the server stops).
    stop_asking: asyncio.Event = field(default_factory=asyncio.Event)

    def request_pause(self, reason: str) -> None:
        """Stop before the next model or tool call; the turn can be resumed later."""
        self.pause_requested = True
        self.pause_reason = reason

    def request_stop(self, reason: str) -> None:
        """Pause like `request_pause`, and at once when the turn waits for an approval: nothing
        runs then, and the question, already stored, is asked again when the turn resumes."""
        self.request_pause(reason)
        self.stop_asking.set()


#: How many turns may be starting at once: storing the message, gathering memory, assembling the
#: context, connecting to the model and sending the request. That is CPU work on the event loop;
#: when hundreds of turns start together (a burst of requests, a broadcast), admitting a few at a
#: time keeps the replies already streaming from waiting behind all of them, and the first turns
#: get their answer sooner. The wait for the model is not part of it. (Connections left out of
#: it, 200 turns started together made their connections in the same few turns of the loop, each
#: of them 50-90 ms long, and replies already streaming waited for them.)
STARTING_AT_ONCE = 4
#: Seconds a turn keeps its place while its request is being sent. Connecting and writing take
#: well under a millisecond of work; a request slower than this waits on the network (a new TLS
#: connection to a distant provider) and lets the next turns start meanwhile.
SENDING_HOLD = 0.02


class _Admission:
    """One turn's place among the turns starting at once (`STARTING_AT_ONCE`); left once."""

    def __init__(self, starting: asyncio.Semaphore):
        self._starting = starting
        self._inside = False
        self._deadline: asyncio.TimerHandle | None = None

    async def enter(self) -> None:
        await self._starting.acquire()
        self._inside = True

    def leave_within(self, seconds: float) -> None:
        """Leave at the latest `seconds` from now (or when `leave` is called first)."""
        if self._inside and self._deadline is None:
            self._deadline = asyncio.get_running_loop().call_later(seconds, self.leave)

    def leave(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if self._inside:
            self._inside = False
            self._starting.release()


@dataclass
class Runtime:
    """Runs turns: context, model, tools, policy, approvals; every step durable in the session log."""

    provider_for: Callable[[Agent], Provider]
    approvals: ApprovalBroker = field(default_factory=ApprovalBroker)
    memory: MemoryStore | None = None
    artifacts: ArtifactStore | None = None
    scrub_env: frozenset[str] = frozenset()
    max_steps: int = DEFAULT_MAX_STEPS
    on_change: ChangeListener = ignore_changes
    #: Refuses to save an "allow always" pattern holding a secret (policy.yaml is committed to git).
    guard: SecretGuard | None = None
    #: Where an agent's tools run (default: `default_workdir`, never the definition folder).
    workdir_for: Callable[[Agent], Path] | None = None
    #: The data directory holding the workspace-wide `skills/` and `tools/` (default: the agents
    #: folder's parent).
    data_dir: Path | None = None
    #: The server's scheduler, offered to the `schedule` tool (set once the server has one).
    schedules: Scheduler | None = None
    #: The server's background processes, offered to `background_process`.
    processes: ProcessManager | None = None
    #: Told +1 when tool calls start and -1 when they end (the human-edit watcher waits meanwhile).
    tool_activity: Callable[[int], None] = field(default=lambda _delta: None)
    #: Turns between their start and their first model call (see `STARTING_AT_ONCE`).
    starting: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(STARTING_AT_ONCE))
    #: Seconds a turn keeps its place among them while its model request is being sent.
    sending_hold: float = SENDING_HOLD
    #: Where `web_search` searches for agents without their own `tools.web_search` (duragent.yaml).
    web_search: WebSearchSpec | None = None
    #: The MCP servers whose tools agents get (None: no MCP tools).
    mcp: McpHub | None = None
    #: Agent folders with their symlinks resolved, worked out once (a dozen system calls a turn).
    _resolved_dirs: dict[Path, Path] = field(default_factory=dict, init=False, repr=False)
    #: Per agent: its two skills folders, and the skills found there with the stamps they hold for.
    _skill_folders: dict[tuple[Path, str | None], tuple[Path, Path]] = field(
        default_factory=dict, init=False, repr=False
    )
    _skill_sets: dict[tuple[Path, str | None], tuple[tuple[tuple[str, Stamp], ...], SkillSet]] = field(
        default_factory=dict, init=False, repr=False
    )
    #: Per agent folder: its two `tools/` folders, and their stamps while they hold no tool folder.
    _tool_dirs: dict[Path, tuple[str, ...]] = field(default_factory=dict, init=False, repr=False)
    _no_tool_folders: dict[Path, tuple[Stamp, ...]] = field(default_factory=dict, init=False, repr=False)
    _workdirs: dict[tuple[Path, str], Path] = field(default_factory=dict, init=False, repr=False)
    #: Per (data directory, agents folder): the files undone when a call nobody approved changes them.
    _guards: dict[tuple[Path, Path], GuardedFiles] = field(default_factory=dict, init=False, repr=False)
    _session_folders: dict[tuple[int, str], tuple[object, Path | None]] = field(
        default_factory=dict, init=False, repr=False
    )
    #: Per model: the context budget its own window allows, once it refused a larger context
    #: naming its window (`ContextTooLong.limit`); later turns start there.
    _context_budgets: dict[ModelSpec, int] = field(default_factory=dict, init=False, repr=False)
    #: Per agent folder: the tools its `spec.tools` enables, by name, with the spec they came from.
    _builtins: dict[Path, tuple[AgentSpec, dict[str, AnyTool]]] = field(
        default_factory=dict, init=False, repr=False
    )

    @cached_property
    def problems(self) -> ProblemLog:
        """Invalid skills and tool folders are logged once, not every turn."""
        from duragent.skills.discovery import ProblemLog

        return ProblemLog()

    @cached_property
    def skill_cache(self) -> SkillCache:
        """Skills parsed in earlier turns, parsed again only when their SKILL.md changes."""
        from duragent.skills.discovery import SkillCache

        return SkillCache()

    @cached_property
    def policies(self) -> PolicyCache:
        """Agents' policies, parsed again only when policy.yaml changes."""
        from duragent.runtime.policy import PolicyCache

        return PolicyCache()

    @cached_property
    def _tool_tokens(self) -> ToolTokens:
        """The tokens of the tool definitions offered, counted once per list and provider."""
        from duragent.runtime.context import ToolTokens

        return ToolTokens()

    async def run_turn(
        self,
        session: SessionLog,
        agent: Agent,
        content: str | None,
        *,
        sender: Mapping[str, Any] | None = None,
        control: TurnControl | None = None,
        queue_id: str | None = None,
    ) -> AsyncGenerator[RuntimeEvent, None]:
        """Run one turn for `content` (None continues the session's unfinished turn).

        `queue_id` names the `message_queued` event this message was accepted with, if any.
        """
        control = control or TurnControl()
        admission = _Admission(self.starting)
        await admission.enter()
        try:
            if content is not None:
                # A message never lands between a tool call and its result (providers refuse that
                # order): calls a stopped turn left open are answered first. (A live session
                # finishes such a turn before it starts the next: this is for any other way in.)
                await close_open_tool_calls(session, INTERRUPTED)
                payload: dict[str, Any] = {"content": content, "turn": session.state.turns + 1}
                if sender:
                    payload["sender"] = dict(sender)
                if queue_id:
                    payload["queue_id"] = queue_id
                # Fsynced in a thread while the model request is built and sent: clients hear of
                # it (and tools run) only once it is durable; a crash before looks like it never came.
                await session.append_unsynced("user_message", payload)
            yield TurnStarted(session.state.turns, content)
            try:
                tools = dict(self._builtin_tools(agent))
                policy = self.policies.load(agent.directory, agent.spec.tools.policy)
            except DuragentError as exc:
                yield await self._fail(session, AGENT_INVALID, agent_cannot_answer(agent.name, str(exc)))
                return
            skills = await self._skills(agent)
            await self._add_local_tools(agent, tools, skills)
            self._add_mcp_tools(tools, await self._mcp_tools(agent, admission))
            # (a plain deque: only this turn's tool calls add to it, on the loop, without waiting)
            notifications: deque[str] = deque()
            steps = self._steps(session, agent, tools, policy, notifications, control, admission, skills)
            # Each level closes the one below it when it stops early (a cancel, the caller closing
            # the turn): the cleanup inside (an approval request withdrawn) happens now, not when
            # the garbage collector's finalizer gets to it.
            async with aclosing(steps):
                async for event in steps:
                    yield event
        finally:
            admission.leave()

    def _builtin_tools(self, agent: Agent) -> dict[str, AnyTool]:
        """`tools_for` the agent's spec by name, made once per agent version (the tools keep no
        state between calls); the caller copies it before adding the turn's own tools."""
        known = self._builtins.get(agent.directory)
        if known is not None and known[0] is agent.spec:
            return known[1]
        from duragent.tools.registry import tools_for

        tools = {t.name: t for t in tools_for(agent.spec.tools, include_memory=_memory_on(agent))}
        self._builtins[agent.directory] = (agent.spec, tools)
        return tools

    async def _add_local_tools(self, agent: Agent, tools: dict[str, AnyTool], skills: SkillSet) -> None:
        """Add to `tools` (the agent's `spec.tools`) what a turn offers beside them, MCP servers'
        tools aside: the workspace's web search, `skill`, the tool folders' tools."""
        if agent.spec.tools.web_search is None and "web_search" in tools:
            from duragent.tools.web_search import WebSearchTool

            tools[WebSearchTool.name] = WebSearchTool(self.web_search)
        if skills:
            from duragent.tools.skill import SkillTool

            tools.setdefault(SkillTool.name, SkillTool(skills))
        await self._add_folder_tools(agent, tools)

    async def preview_context(
        self, agent: Agent, state: SessionState, session_dir: Path | None
    ) -> tuple[AssembledContext, int]:
        """The context the agent's next model request would send for a session in `state`
        (`session_dir`: its folder, where working memory is), and how many tool definitions are
        counted in it: every tool a turn offers save MCP servers' (no server is started for a look)."""
        tools = dict(self._builtin_tools(agent))
        skills = await self._skills(agent)
        await self._add_local_tools(agent, tools, skills)
        definitions = tuple(tool.definition for tool in tools.values())
        return await self._context(agent, state, session_dir, definitions, skills), len(definitions)

    async def _mcp_tools(self, agent: Agent, admission: _Admission) -> list[McpTool]:
        """The tools of the agent's MCP servers; a server starting up is waited for outside admission."""
        if self.mcp is None or not self.mcp.configured(agent):
            return []
        admission.leave()  # a server starting on first use may take seconds: other turns go on
        try:
            return list(await self.mcp.tools_for(agent))
        finally:
            await admission.enter()

    def _add_mcp_tools(self, tools: dict[str, AnyTool], offered: list[McpTool]) -> None:
        """Add MCP tools to `tools`; one whose name another tool has is left out, and said so once."""
        for tool in offered:
            if tool.name not in tools:
                tools[tool.name] = tool
                continue
            taken = f"{tool.name!r} of MCP server {tool.server!r}: the agent already has a tool of that name"
            self.problems.warn([Problem(taken)], "MCP tool", skipping="not offering")

    async def _steps(
        self,
        session: SessionLog,
        agent: Agent,
        tools: dict[str, AnyTool],
        policy: ToolPolicy,
        notifications: deque[str],
        control: TurnControl,
        admission: _Admission,
        skills: SkillSet,
    ) -> AsyncGenerator[RuntimeEvent, None]:
        provider = self.provider_for(agent)
        ctx: ToolContext | None = None  # made for the turn's first tool call: most turns make none
        waiting = calls_awaiting_approval(session)
        if waiting:
            ctx = self._tool_context(agent, session, notifications, skills)
            admission.leave()  # a person may take a while to answer
            # The turn stopped (a restart) while a person was being asked: none of these calls ran,
            # so ask again and carry on from there.
            paused = False
            asked = self._run_calls(
                session, agent, tools, policy, ctx, waiting, control, recorded=True, skills=skills
            )
            async with aclosing(asked):
                async for event in asked:
                    paused = paused or isinstance(event, TurnPaused)
                    yield event
            if paused:
                return
        # Calls left without a result by an interrupted run are answered before the model is asked again.
        await close_open_tool_calls(session, INTERRUPTED)
        for _step in range(self.max_steps):
            if control.pause_requested:
                yield TurnPaused(control.pause_reason)
                return
            # Built every step: `reload_tools` may have changed the tools since the last one.
            definitions = tuple(tool.definition for tool in tools.values())
            budget = self._context_budgets.get(agent.spec.model) if self._context_budgets else None
            for shrinks in range(CONTEXT_SHRINKS + 1):
                request, context = await self._request(agent, session, definitions, skills, budget)
                if context.tools_tokens >= context.budget:
                    # Nothing else would fit beside them: the model could only refuse, every turn.
                    refusal = _tools_too_large_text(agent, len(definitions), context, budget is not None)
                    log.warning("agent %s: %s", agent.name, refusal)
                    yield await self._fail(session, "context_too_long", refusal)
                    return
                if context.tokens > context.budget and context.tools_tokens:
                    log.warning(
                        "agent %s: the context (about %d tokens) is over its budget of %d: its %d tool "
                        "definitions take about %d of them; the model may refuse it",
                        agent.name,
                        context.tokens,
                        context.budget,
                        len(definitions),
                        context.tools_tokens,
                    )
                reply = _StepReply()
                try:
                    async with aclosing(self._ask_model(provider, request, admission, reply)) as asked:
                        async for event in asked:
                            yield event
                except ContextTooLong as exc:
                    if shrinks == CONTEXT_SHRINKS:
                        hint = _too_long_hint(agent, len(definitions), context.tools_tokens)
                        yield await self._fail(session, "context_too_long", f"{exc}; {hint}")
                        return
                    # Left as it is, every later turn would send the same context and fail the
                    # same way: older messages are left out until it fits (as trimming does).
                    budget = self._shrink_context(agent, exc, context.tokens, context.tools_tokens)
                    continue
                except ProviderError as exc:
                    if reply.text:
                        await self._assistant(session, "".join(reply.text), [], reply.usage, partial=True)
                    # (a call refused without any text may still have said what it used)
                    unstored = {} if reply.text else reply.usage
                    failed = _failure_text(exc, bool(reply.text))
                    yield await self._fail(session, "llm_error", failed, usage=unstored)
                    return
                except asyncio.CancelledError:
                    # Keep what was said so far; the caller records the cancellation.
                    if reply.text:
                        kept = self._assistant(session, "".join(reply.text), [], reply.usage, partial=True)
                        await asyncio.shield(kept)
                    raise
                break
            text, calls, usage, truncated = reply.text, reply.calls, reply.usage, reply.truncated
            if not calls and not "".join(text).strip():
                # Stored as the reply, it would show as nothing (a chat gateway cannot even send
                # empty text) and go back to the model as a message some providers refuse. What
                # the call used is kept with the error: it was paid for all the same.
                empty = _empty_reply_text(provider.name, truncated)
                yield await self._fail(session, "llm_error", empty, usage=usage)
                return
            # Every model call of this turn so far, those before a restart included (kept in the log).
            turn_usage = dict(session.state.turn_usage)
            for key, count in usage.items():
                turn_usage[key] = turn_usage.get(key, 0) + count
            final = not calls
            message_id = await self._assistant(
                session,
                "".join(text),
                calls,
                usage,
                truncated=truncated,
                turn_usage=turn_usage if final else None,
            )
            if final:
                yield TurnFinished(message_id, "".join(text), dict(turn_usage), truncated)
                return
            paused = False
            if ctx is None:
                ctx = self._tool_context(agent, session, notifications, skills)
            # (an "allow always" answered since the turn began, in it or in another session,
            # covers these calls)
            policy = self._current_policy(agent, policy)
            ran = self._run_calls(session, agent, tools, policy, ctx, calls, control, skills=skills)
            async with aclosing(ran):
                async for event in ran:
                    paused = paused or isinstance(event, TurnPaused)
                    yield event
            if paused:
                return
            while notifications:
                yield Notification(notifications.popleft())
        yield await self._fail(
            session,
            "max_steps",
            f"the turn used all {self.max_steps} steps (model calls) without a final answer; what its "
            "tools did is kept: send another message (e.g. 'continue') to let the agent go on",
        )

    async def _ask_model(
        self, provider: Provider, request: LLMRequest, admission: _Admission, reply: _StepReply
    ) -> AsyncGenerator[RuntimeEvent, None]:
        """One model call, gathered into `reply`; yields its text and its retry notices."""
        # Admitted until the request is sent (making the connection is part of starting), or for
        # `sending_hold` if the network is slower than that.
        admission.leave_within(self.sending_hold)
        refused = False
        async with aclosing(provider.stream(request, sent=admission.leave)) as stream:
            async for chunk in stream:
                admission.leave()  # (a provider that cannot tell when it sent: its first chunk)
                if isinstance(chunk, TextDelta):
                    reply.text.append(chunk.text)
                    yield TextEvent(chunk.text)
                elif isinstance(chunk, ToolCallComplete):
                    reply.calls.append(chunk.tool_call)
                elif isinstance(chunk, Usage):
                    reply.usage = {"input_tokens": chunk.input_tokens, "output_tokens": chunk.output_tokens}
                elif isinstance(chunk, Finish):
                    reply.truncated = chunk.reason == "length"
                    refused = chunk.reason == "error"
                elif isinstance(chunk, Retrying):
                    yield ModelRetrying(chunk.attempt, chunk.attempts, chunk.delay, chunk.reason)
        if refused:
            # OpenAI's `content_filter`, Anthropic's `refusal`: not an answer to store as one
            raise ProviderError(
                f"{provider.name} ended the reply as refused (a content filter, or the model declining "
                "to answer): rephrase the message, or ask something else",
                provider=provider.name,
            )

    def _shrink_context(
        self, agent: Agent, refused: ContextTooLong, sent_tokens: int, tools_tokens: int = 0
    ) -> int:
        """The budget to ask again with after the model refused `sent_tokens` (`tools_tokens` of
        them tool definitions, which stay as they are) as too long.

        The window the model named holds for its next turns too (not a guess made without it:
        one odd refusal must not shrink every later turn).
        """
        budget = smaller_budget(agent, refused.limit, sent_tokens, tools_tokens)
        if refused.limit:
            known = smaller_budget(agent, refused.limit, refused.limit)
            model = agent.spec.model
            self._context_budgets[model] = min(known, self._context_budgets.get(model, known))
        log.warning("%s; asking again with a context of about %d tokens", refused, budget)
        return budget

    async def _request(
        self,
        agent: Agent,
        session: SessionLog,
        definitions: tuple[ToolDefinition, ...],
        skills: SkillSet,
        budget: int | None = None,
    ) -> tuple[LLMRequest, AssembledContext]:
        """The step's model request, and the account of its context (the tools counted in it)."""
        session_dir = self._session_folder(session) if self.memory else None
        context = await self._context(agent, session.state, session_dir, definitions, skills, budget)
        model = agent.spec.model
        request = LLMRequest(
            model=model.name,
            messages=context.messages,
            tools=definitions,
            temperature=model.temperature,
            max_output_tokens=model.max_output_tokens,
        )
        return request, context

    async def _context(
        self,
        agent: Agent,
        state: SessionState,
        session_dir: Path | None,
        definitions: tuple[ToolDefinition, ...],
        skills: SkillSet,
        budget: int | None = None,
    ) -> AssembledContext:
        """The context of a request offering `definitions`: memory and the conversation fitted to
        what the tools leave of the budget."""
        from duragent.runtime.context import assemble_context, context_budget
        from duragent.runtime.memory_context import gather_memory, memory_budget

        now = utcnow()
        tools_tokens = self._tool_tokens.count(agent.spec.model.provider, definitions)
        # The tools are sent whatever else fits: memory's share is of what they leave.
        whole = context_budget(agent) if budget is None else min(context_budget(agent), budget)
        room = whole - tools_tokens
        memory_text = ""
        if self.memory:
            memory_text = await gather_memory(
                self.memory,
                agent,
                now.date(),
                session_dir=session_dir,
                max_tokens=memory_budget(agent, room),
            )
        index = ""
        if skills:
            from duragent.skills.index import index_budget, skills_index

            index = skills_index(skills.sorted(), index_budget(agent))
        return assemble_context(
            agent,
            state,
            memory_text=memory_text,
            skills_text=index,
            now=now,
            budget=whole,
            tools_tokens=tools_tokens,
        )

    async def _assistant(
        self,
        session: SessionLog,
        text: str,
        calls: list[ToolCall],
        usage: dict[str, int],
        *,
        partial: bool = False,
        truncated: bool = False,
        turn_usage: dict[str, int] | None = None,
    ) -> str:
        message_id = new_id("msg")
        payload: dict[str, Any] = {"content": text, "message_id": message_id}
        if usage:
            payload["usage"] = usage
        if turn_usage:
            # The turn's reply: what all its model calls used (`usage` is this call's alone).
            payload["turn_usage"] = dict(turn_usage)
        if truncated:
            payload["truncated"] = True
        if calls:
            payload["tool_calls"] = [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in calls]
        if partial:
            payload["partial"] = True
        await session.append("assistant_message", payload)
        return message_id

    async def _fail(
        self, session: SessionLog, code: str, message: str, *, usage: dict[str, int] | None = None
    ) -> TurnFailed:
        """Record the turn's `error`; `usage`: what a model call whose reply is not stored used."""
        # `retryable`: whether `/retry` can run the turn again
        retryable = can_run_again(session.state)
        payload: dict[str, Any] = {"code": code, "message": message, "retryable": retryable}
        if usage:
            payload["usage"] = dict(usage)
        # What every model call of the turn used, this one's included (as on a turn's final reply).
        turn_usage = dict(session.state.turn_usage)
        for key, count in (usage or {}).items():
            turn_usage[key] = turn_usage.get(key, 0) + count
        if turn_usage:
            payload["turn_usage"] = turn_usage
        await session.append("error", payload)
        return TurnFailed(code, message)

    def _current_policy(self, agent: Agent, known: ToolPolicy) -> ToolPolicy:
        """The agent's policy as policy.yaml holds it now (one stat when unchanged); `known` when
        the file stopped loading and the cache has nothing better."""
        try:
            return self.policies.load(agent.directory, agent.spec.tools.policy)
        except DuragentError:
            return known

    async def _run_calls(
        self,
        session: SessionLog,
        agent: Agent,
        tools: dict[str, AnyTool],
        policy: ToolPolicy,
        ctx: ToolContext,
        calls: list[ToolCall],
        control: TurnControl,
        *,
        recorded: bool = False,
        skills: SkillSet | None = None,
    ) -> AsyncGenerator[RuntimeEvent, None]:
        if not recorded:
            await session.append_many(
                [("tool_call", {"call_id": c.id, "tool": c.name, "arguments": c.arguments}) for c in calls]
            )
        # (here, not every turn: most turns call no tool, and a person may remove the folder)
        unusable = _unusable_workdir(ctx.workdir)
        # The calls that run, each with whether a person approved it: only what those change in
        # the guarded files (definitions, policy, git's configuration) is kept.
        runnable: list[tuple[ToolCall, AnyTool, Any, bool]] = []
        results: dict[str, ToolResult] = {}
        from duragent.skills.active import refusal, restricting_skills
        from duragent.tools.protected import reached_outside_workdir

        restricting = restricting_skills(session.state.conversation, skills.skills) if skills else []
        for call in calls:
            if unusable is not None:
                results[call.id] = ToolResult(False, unusable)
                continue
            prepared = _prepare(call, tools)
            if isinstance(prepared, ToolResult):
                results[call.id] = prepared
                continue
            tool, args = prepared
            subject, invocation = tool.policy_subject(args, ctx)
            refused = refusal(restricting, subject, invocation)
            if refused is not None:
                results[call.id] = ToolResult(False, refused)
                continue
            verdict = policy.decide(subject, invocation).decision
            if verdict == "allow" and (subject == "bash" or isinstance(tool, CliTool)):
                # (in a thread: globs are matched on the disk, over a work folder of any size)
                reached = await asyncio.to_thread(
                    reached_outside_workdir,
                    invocation,
                    ctx.workdir,
                    self._data_dir(agent),
                    start=tool.command_folder(args, ctx),
                )
                if reached is not None:
                    # (a glob or a symlink names nothing, yet reaches the tokens: a person decides)
                    log.info("asking before a command: it reaches %s, outside the work folder", reached)
                    verdict = "ask"
            approved = False
            denial = "denied by policy"
            if verdict == "ask":
                if control.pause_requested:
                    # Nobody can answer now (the client left, or the server is stopping): the call is
                    # recorded as asked but undecided, and resuming the turn asks again. No call of the
                    # batch has run yet, so the whole batch is taken up again then.
                    await session.append("approval_required", _approval_payload(session, call, invocation))
                    yield TurnPaused(control.pause_reason)
                    return
                try:
                    asking = self._ask(session, agent, call, (subject, invocation), policy, control)
                    async with aclosing(asking):
                        async for event in asking:
                            if isinstance(event, TurnPaused):
                                # (stopped while asking: no call of the batch has run, as above)
                                yield event
                                return
                            if isinstance(event, ApprovalResolved):
                                if event.decision == "allow_always":  # the batch's next such call is allowed
                                    policy = self._current_policy(agent, policy)
                                verdict = "allow" if event.decision != "deny" else "deny"
                                approved = verdict == "allow"
                                denial = (
                                    "denied (nobody answered in time)"
                                    if event.reason == "timeout"
                                    else "denied by the person asked"
                                )
                            yield event
                except (asyncio.CancelledError, GeneratorExit):
                    # (GeneratorExit: the caller closed the turn while it was waiting for the answer.)
                    if not control.pause_requested:
                        # Cancelled by a client: these calls are over. (A pause asked for by a
                        # shutdown leaves them open, so the approval is asked again on resume.)
                        await asyncio.shield(close_open_tool_calls(session, CANCELLED, ran_ms={}))
                    raise
            if verdict == "deny":
                results[call.id] = ToolResult(False, f"{denial}: {subject} {invocation}".strip())
            else:
                runnable.append((call, tool, args, approved))
        for call, _tool, _args, _approved in runnable:
            yield ToolCallStarted(call.id, call.name, call.arguments)
        timings: dict[str, int] = {}
        # Side effects only once every event before them is durable (the user message included).
        await session.synced()
        # The calls nobody approved run first, on their own: whatever they change in the guarded
        # files is undone after them. Those a person approved run next, and their changes stay.
        unasked = [(c, t, a) for c, t, a, approved in runnable if not approved]
        asked = [(c, t, a) for c, t, a, approved in runnable if approved]
        self.tool_activity(+1)
        try:
            outcomes = await self._run_batch(agent, ctx, unasked, timings, undo=True)
            outcomes += await self._run_batch(agent, ctx, asked, timings, undo=False)
        except asyncio.CancelledError:
            # (the calls' own timings are in: the batch waits for every call to stop before it ends)
            await asyncio.shield(close_open_tool_calls(session, CANCELLED, ran_ms=timings))
            raise
        finally:
            self.tool_activity(-1)
        for (call, _tool, _args), outcome in zip([*unasked, *asked], outcomes, strict=True):
            results[call.id] = outcome
        await session.append_many(
            [
                (
                    "tool_result",
                    {
                        "call_id": c.id,
                        "tool": c.name,
                        "ok": results[c.id].ok,
                        "content": results[c.id].content,
                        "duration_ms": timings.get(c.id, 0),
                        **_kept_with_result(c, results[c.id]),
                    },
                )
                for c in calls
            ]
        )
        for call in calls:
            await _after_stored(results[call.id], call)
        for call in calls:
            result = results[call.id]
            yield ToolCallFinished(call.id, call.name, result.ok, result.content, timings.get(call.id, 0))

    async def _ask(
        self,
        session: SessionLog,
        agent: Agent,
        call: ToolCall,
        target: tuple[str, str],
        policy: ToolPolicy,
        control: TurnControl,
    ) -> AsyncGenerator[RuntimeEvent, None]:
        subject, invocation = target
        waiting = self.approvals.request(
            call.id,
            session_id=session.session_id,
            agent=agent.name,
            tool=call.name,
            invocation=invocation,
            arguments=call.arguments,
        )
        try:
            await session.append("approval_required", _approval_payload(session, call, invocation))
            yield ApprovalRequired(call.id, call.name, call.arguments, invocation)
            outcome = await _answer_unless_stopped(
                waiting, control, lambda: self.approvals.is_open(call.id, session_id=session.session_id)
            )
        finally:
            # However the wait ended (decided, timed out, stopped, or the turn cancelled or closed
            # while the request was being recorded), the request is over: a later resume asks again.
            self.approvals.withdraw(call.id, session_id=session.session_id)
        if outcome is None:
            # The server stops: the question stays stored unanswered, and is asked again on resume.
            yield TurnPaused(control.pause_reason)
            return
        with changes_for_answer(outcome.reason):
            await session.append(
                "approval_decision",
                {"call_id": call.id, "decision": outcome.decision, "reason": outcome.reason},
            )
        secrets = self.guard.find(invocation) if self.guard is not None else []
        if outcome.decision == "allow_always" and secrets:
            log.warning(
                "not saving 'allow always' for %s: the command holds a secret (%s) and policy.yaml is "
                "committed to git; it was allowed once",
                subject,
                ", ".join(secrets),
            )
        elif outcome.decision == "allow_always" and is_numbered(subject):
            log.warning(
                "not saving 'allow always' for %s: its number was given to tell it from another tool "
                "of the same name and can pass to a different tool when its server's tools change; "
                "it was allowed once",
                subject,
            )
        elif outcome.decision == "allow_always":

            def saved(path: Path) -> None:
                # (also when the turn was cancelled while it was saved: git must show it as the agent's)
                self.on_change(
                    Change((path,), "agent", agent.name, f"policy allows {subject} {invocation}".strip())
                )

            try:
                # (between the guard's walks, and taken into every batch running: never undone)
                await self._guard(agent).keep(lambda: policy.allow_always(subject, invocation), then=saved)
            except DuragentError as exc:
                log.warning("could not save 'allow always' for %s: %s", subject, exc)
        yield ApprovalResolved(call.id, outcome.decision, outcome.reason)

    async def _run_batch(
        self,
        agent: Agent,
        ctx: ToolContext,
        calls: list[tuple[ToolCall, AnyTool, Any]],
        timings: dict[str, int],
        *,
        undo: bool,
    ) -> list[ToolResult]:
        """Run `calls` together; what they changed in the guarded files is undone (`undo`: nobody
        approved them) or reported as the agent's change (a person did)."""
        if not calls:
            return []
        from duragent.tools.folders import FolderTool
        from duragent.tools.registry import execute

        async def timed(call: ToolCall, tool: AnyTool, args: Any) -> ToolResult:
            started = time.perf_counter()
            try:
                return await execute(tool, args, ctx)
            finally:
                timings[call.id] = int((time.perf_counter() - started) * 1000)

        # (by name, but never a tool folder's: an agent without `read_file` may have a folder so named)
        guarded = any(isinstance(t, FolderTool) or t.name not in _WRITES_NOTHING_GUARDED for _, t, _ in calls)
        guard = self._guard(agent) if guarded else None
        # (the walks run in the guard's thread: other sessions' turns go on meanwhile)
        before = await guard.begin_batch() if guard is not None else None
        undone: list[str] = []
        try:
            outcomes = list(await asyncio.gather(*(timed(c, t, a) for c, t, a in calls)))
        finally:
            if guard is not None and before is not None:
                walked = guard

                def noted(changed: list[Path]) -> None:
                    undone.extend(self._note_tool_writes(agent, walked, changed, undo=undo))

                # (the undo runs to its end, and what the batch changed is reported, also while
                # the turn is being cancelled)
                await guard.end_batch(before, undo=undo, then=noted)
        if undone:
            note = (
                f"[duragent undid this batch's change to {', '.join(undone)}: only a person changes "
                "an agent's definition, its policy, skills and tools, git's configuration or "
                "duragent.yaml; ask them]"
            )
            outcomes = [replace(o, ok=False, content=f"{o.content}\n{note}".lstrip()) for o in outcomes]
        return outcomes

    def _guard(self, agent: Agent) -> GuardedFiles:
        """The guarded files of the agent's workspace (one per data directory and agents folder)."""
        key = (self._data_dir(agent), agent.directory.parent)
        guard = self._guards.get(key)
        if guard is None:
            from duragent.runtime.guarded_files import GuardedFiles

            guard = self._guards[key] = GuardedFiles(*key)
        return guard

    def _note_tool_writes(
        self, agent: Agent, guard: GuardedFiles, changed: list[Path], *, undo: bool
    ) -> list[str]:
        """Report the guarded files a batch of tool calls changed; the names of those undone.

        A call nobody approved (auto-allowed by the policy) must not change any agent's definition
        or policy, skills, tools, git's configuration or duragent.yaml, however the command reached
        them (a glob, a folder copied over it, a script): with `undo` `end_batch` put them back as
        they were. A change a person approved (a bash command that wrote policy.yaml, say) stays,
        reported as the agent's change: git must not show it as the person's edit.
        """
        if not changed:
            return []
        shown = [_shown(path, guard.data_dir) for path in changed]
        if undo:
            log.warning("undid an unapproved tool call's change to %s", ", ".join(shown))
            return shown
        data = guard.data_dir
        committed = tuple(
            p for p in changed if p.is_relative_to(data) and ".git" not in p.relative_to(data).parts
        )
        if committed:
            self.on_change(Change(committed, "agent", agent.name, "changed by a tool call"))
        return []

    async def _skills(self, agent: Agent) -> SkillSet:
        """The agent's skills as their folders are now (an added skill shows up the next turn).

        Kept while the folders' stamps are unchanged (`skill_stamps`): a few stats a turn.
        """
        key = (agent.directory, agent.spec.skills_dir)
        known = self._skill_sets.get(key)
        if known is not None and all(stamp(path) == before for path, before in known[0]):
            return known[1]
        from duragent.skills.discovery import (
            SkillSet,
            agent_skills_dir,
            discover_skills,
            shared_skills_dir,
            skill_stamps,
        )

        data_dir = self._data_dir(agent)
        folders = self._skill_folders.get(key)
        if folders is None:
            folders = self._skill_folders[key] = (
                shared_skills_dir(data_dir),
                agent_skills_dir(agent.directory, agent.spec.skills_dir),
            )
        stamps = skill_stamps(folders)  # before the scan: a change after it shows next turn
        if len(stamps) == len(folders):
            skills = SkillSet()  # no skill folder: no thread hop to find nothing
        else:
            skills = await asyncio.to_thread(
                discover_skills, agent.directory, data_dir, agent.spec.skills_dir, cache=self.skill_cache
            )
            self.problems.warn(skills.problems, "skill")
        if settled(tuple(current for _path, current in stamps)):
            self._skill_sets[key] = (stamps, skills)
        else:
            self._skill_sets.pop(key, None)
        return skills

    async def _add_folder_tools(self, agent: Agent, tools: dict[str, AnyTool]) -> None:
        """Add the agent's tool folders to `tools`, and `reload_tools` to scan them again mid-turn."""
        data_dir = self._data_dir(agent)
        if not self._has_tool_folders(agent, data_dir):
            return  # no tool folder: nothing to scan, and no reload_tools to offer
        from duragent.tools.folders import (
            FolderTool,
            ReloadToolsTool,
            add_folder_tools,
            discover_tool_folders,
            reload_summary,
        )

        async def rescan() -> str:
            before = {name for name, tool in tools.items() if isinstance(tool, FolderTool)}
            found, problems = await asyncio.to_thread(discover_tool_folders, agent.directory, data_dir)
            problems += add_folder_tools(tools, found)
            self.problems.warn(problems, "tool folder")
            after = {name for name, tool in tools.items() if isinstance(tool, FolderTool)}
            return reload_summary(before, after, problems)

        await rescan()
        tools.setdefault(ReloadToolsTool.name, ReloadToolsTool(rescan))

    def _has_tool_folders(self, agent: Agent, data_dir: Path) -> bool:
        """Whether the agent has tool folders; "none" is kept while both `tools/` folders stay
        absent or empty (one stat each a turn instead of listing them)."""
        dirs = self._tool_dirs.get(agent.directory)
        if dirs is None:
            from duragent.tools.folders import tool_folders_dirs

            dirs = self._tool_dirs[agent.directory] = tuple(
                map(os.fspath, tool_folders_dirs(agent.directory, data_dir))
            )
        stamps = tuple(map(stamp, dirs))
        if self._no_tool_folders.get(agent.directory) == stamps:
            return False
        from duragent.tools.folders import has_tool_folders

        if has_tool_folders(agent.directory, data_dir):
            return True
        # (only empty folders: an entry that is a symlink to a folder made later changes no stamp)
        if settled(stamps) and not _any_entries(dirs):
            self._no_tool_folders[agent.directory] = stamps
        return False

    def _session_folder(self, session: SessionLog) -> Path | None:
        """`session_folder` of the session, worked out once per session (a few hundred kept)."""
        store = session.store
        key = (id(store), session.session_id)
        known = self._session_folders.get(key)
        if known is not None and known[0] is store:
            return known[1]
        if len(self._session_folders) >= _SESSION_FOLDERS_KEPT:
            self._session_folders.clear()
        from duragent.runtime.memory_context import session_folder

        folder = session_folder(store, session.session_id)
        self._session_folders[key] = (store, folder)
        return folder

    def _resolved(self, directory: Path) -> Path:
        resolved = self._resolved_dirs.get(directory)
        if resolved is None:
            resolved = self._resolved_dirs[directory] = directory.resolve()
        return resolved

    def _data_dir(self, agent: Agent) -> Path:
        """The data directory holding the workspace-wide `skills/` and `tools/`."""
        return self.data_dir or _grandparent(agent.directory)

    def workdir(self, agent: Agent) -> Path:
        """Where the agent's tools run: `workdir_for(agent)`, else `<data dir>/work/<agent>`."""
        if self.workdir_for is not None:
            return self.workdir_for(agent)
        workdir = self._workdirs.get((agent.directory, agent.name))
        if workdir is None:
            workdir = self._workdirs[agent.directory, agent.name] = default_workdir(agent)
        return workdir

    def _tool_context(
        self, agent: Agent, session: SessionLog, notifications: deque[str], skills: SkillSet
    ) -> ToolContext:
        async def notify(message: str) -> None:
            await session.append("notification", {"message": message})
            notifications.append(message)

        return ToolContext(
            agent=agent.name,
            session_id=session.session_id,
            workdir=self.workdir(agent),  # (made by the first tool call: `_run_calls`)
            memory=self.memory,
            artifacts=self.artifacts,
            scrub_env=self.scrub_env,
            pass_env=tuple(agent.spec.tools.env),
            protected_dirs=(self._resolved(agent.directory),),
            notify=notify,
            schedules=self.schedules,
            session_metadata=session.state.metadata,
            scheduled_by=_scheduled_by(session, self.processes),
            session_store=session.store,
            processes=self.processes,
            read_roots=tuple(skill.directory for skill in skills.sorted()),
            git_ceiling=self._data_dir(agent),
        )


@lru_cache(maxsize=256)
def _grandparent(directory: Path) -> Path:
    """`directory.parent.parent`, worked out once per agent folder (pathlib's parents cost)."""
    return directory.parent.parent


def _scheduled_by(session: SessionLog, processes: ProcessManager | None) -> str | None:
    """The schedule whose task started the current turn (its user message says so), or None.

    The turn a process's end starts (`[process finished] proc_...`) is the task's that started
    the process: otherwise a task would escape `tasks_may_schedule` through a process."""
    for message in reversed(session.state.conversation):
        if message.get("role") == "user" and not message.get("silent"):
            content = str(message.get("content") or "")
            handle = finished_process_of(content)
            if handle is not None and processes is not None:
                by_process = processes.scheduled_by(handle, session.state.agent, session.session_id)
                if by_process is not None:
                    return by_process
            return scheduled_task_of(content)
    return None


def default_workdir(agent: Agent) -> Path:
    """`<data dir>/work/<agent>`: beside `agents/`, so the definition folder is never the tools' cwd."""
    return agent.directory.parent.parent / "work" / agent.name


def _unusable_workdir(folder: Path) -> str | None:
    """Why the tools cannot run in `folder` (made if missing), None when they can: each call is
    answered with it, so the model hears of it and no call is left without a result."""
    try:
        prepare_workdir(folder)
    except OSError as exc:
        log.warning("the work folder %s cannot be made: %s", folder, exc)
        return f"the work folder {folder} cannot be made: {exc.strerror or exc}"
    return None


def _any_entries(folders: Iterable[str]) -> bool:
    """Whether any of `folders` holds something not hidden (listing an empty folder costs microseconds,
    a thread hop to scan it a good part of a turn's overhead)."""
    for folder in folders:
        try:
            with os.scandir(folder) as entries:
                if any(not entry.name.startswith(".") for entry in entries):
                    return True
        except OSError:
            continue  # no such folder
    return False


def _shown(path: Path, data_dir: Path) -> str:
    """`path` relative to the data directory when inside it (`agents/helper/policy.yaml`)."""
    return str(path.relative_to(data_dir)) if path.is_relative_to(data_dir) else str(path)


def smaller_budget(agent: Agent, limit: int | None, sent_tokens: int, fixed_tokens: int = 0) -> int:
    """A context budget below what the model just refused: its window (when it said it) less the
    reply and a 10% margin, and at most what was sent with three quarters of what can shrink (our
    estimate erred); `fixed_tokens` (the tool definitions) cannot: the conversation gives way."""
    from duragent.runtime.context import DEFAULT_OUTPUT_TOKENS

    fixed = min(fixed_tokens, sent_tokens)
    budgets = [fixed + (sent_tokens - fixed) * 3 // 4]
    if limit:
        output = agent.spec.model.max_output_tokens or DEFAULT_OUTPUT_TOKENS
        budgets.append(limit - min(output, limit // 4) - limit // 10)
    return max(256, min(budgets))


def _too_long_hint(agent: Agent, tools: int = 0, tools_tokens: int = 0) -> str:
    """What to do when the context does not fit even with older messages left out."""
    from duragent.runtime.context import context_budget

    hint = (
        "older messages were left out and it still does not fit: send a shorter message or start a "
        f"new session; if the model's window is smaller than Duragent assumed ({context_budget(agent)} "
        "tokens of context), set spec.context.max_tokens in agent.yaml"
    )
    if tools_tokens:
        hint += (
            f"; the agent's {tools} tool definitions take about {tools_tokens:,} tokens of it: offering "
            "fewer tools (spec.tools, MCP servers) leaves the conversation more room"
        )
    return hint


def _tools_too_large_text(agent: Agent, tools: int, context: AssembledContext, refused: bool = False) -> str:
    """Why a turn whose tool definitions alone fill the context budget is not sent (`refused`:
    the budget is what is left after the model refused a larger request)."""
    from duragent.runtime.context import context_window

    source = (
        "what is left below a request the model refused as too long"
        if refused
        else f"the model's window of {context_window(agent):,} tokens less the reply and a 10% margin"
    )
    return (
        f"the agent's {tools} tool definitions take about {context.tools_tokens:,} tokens, all of the "
        f"{context.budget:,}-token context budget ({source}): no room is left for the prompts and "
        "the conversation, so nothing was sent; offer fewer tools (spec.tools, MCP servers in "
        "duragent.yaml), or if the model's window is larger than Duragent assumed, set "
        "spec.context.max_tokens in agent.yaml"
    )


def _empty_reply_text(provider: str, truncated: bool) -> str:
    """What to tell the user when the model's reply held no text and no tool call."""
    if truncated:
        return (
            f"{provider} ended its reply at its length limit before any text (a reasoning model may "
            "have spent it thinking): raise spec.model.max_output_tokens in agent.yaml, then retry the "
            "turn"
        )
    return f"{provider} ended its reply without any text or tool call: retry the turn"


def _failure_text(error: ProviderError, kept_partial: bool) -> str:
    """The turn's error message: the provider's, and what became of the text already streamed."""
    if kept_partial and isinstance(error, StreamError):
        return f"{error}; the reply so far is kept (marked partial): retry the turn for a whole one"
    if isinstance(error, StreamError) and not isinstance(error, StreamTimeout) and not error.explained:
        # (a stream that broke after its reply began is not asked again: the user must)
        return f"{error}; nothing of the reply was kept: retry the turn"
    return str(error)


async def _answer_unless_stopped(
    waiting: Awaitable[ApprovalOutcome], control: TurnControl, still_open: Callable[[], bool]
) -> ApprovalOutcome | None:
    """The person's answer, or None when the turn is stopped before it came (`still_open`: nobody
    has answered yet). An answer given before the stop is applied, even if it is still on its way."""
    answer = asyncio.ensure_future(waiting)
    stopped = asyncio.ensure_future(control.stop_asking.wait())
    try:
        done, _ = await asyncio.wait({answer, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if answer in done or not still_open():
            return await answer
        return None
    finally:
        # (cancelled or stopped: the wait for the answer is over, and its request withdrawn by the caller)
        answer.cancel()
        stopped.cancel()


def _approval_payload(session: SessionLog, call: ToolCall, invocation: str) -> dict[str, Any]:
    # The call is one of the latest batch's: its position tells it from an earlier call of its id,
    # so a gateway's button decides only the call it was shown for.
    return {
        "call_id": call.id,
        "tool": call.name,
        "arguments": call.arguments,
        "command": invocation,
        "batch_position": session.state.last_batch_position(),
    }


async def _after_stored(result: ToolResult, call: ToolCall) -> None:
    """Run what the tool asked for once its result is durable (`ToolResult.on_stored`)."""
    if result.on_stored is None:
        return
    try:
        await result.on_stored()
    except Exception:
        # (the result is stored: the turn goes on; what the tool meant to follow it is in the log)
        log.exception("tool %s (call %s): what follows its stored result failed", call.name, call.id)


def _kept_with_result(call: ToolCall, result: ToolResult) -> dict[str, Any]:
    """What a result's event keeps beside its text: a skill's restriction as it was loaded."""
    from duragent.skills.active import RECORDED, SKILL_TOOL

    if call.name == SKILL_TOOL and result.ok and result.data and RECORDED in result.data:
        return {RECORDED: result.data[RECORDED]}
    return {}


def _memory_on(agent: Agent) -> bool:
    return agent.spec.memory is not None and agent.spec.memory.enabled


def _prepare(call: ToolCall, tools: dict[str, AnyTool]) -> tuple[AnyTool, Any] | ToolResult:
    tool = tools.get(call.name)
    if tool is None:
        return ToolResult(False, f"unknown tool {call.name!r}; available: {', '.join(tools) or 'none'}")
    if call.unparsed_arguments is not None:
        return ToolResult(
            False, f"invalid arguments for {call.name}: not a JSON object: {call.unparsed_arguments}"
        )
    try:
        return tool, tool.parse_arguments(call.arguments)
    except InvalidToolArguments as exc:
        return ToolResult(False, str(exc))


def agent_cannot_answer(name: str, problems: str) -> str:
    """What a person is told of an agent whose files do not load (`file:line:col: ...` lines)."""
    return f"agent {name!r} cannot answer until its files are fixed:\n{problems}"


async def close_open_tool_calls(
    session: SessionLog, reason: str, ran_ms: Mapping[str, int] | None = None
) -> int:
    """Record a failed result for every tool call of the session that has none; returns how many.

    `ran_ms` (given when this process stops its own calls: a cancel) says how long each call ran;
    a call not in it never started, and ran 0 ms. Without it (calls a crash or a restart left
    open) the result has no `duration_ms`: the process that ran them is gone, and when it
    stopped is not known, so any number would be made up.
    """
    open_calls = session.state.open_tool_calls()
    if open_calls:
        results: list[tuple[str, dict[str, Any]]] = []
        for call in open_calls:
            payload = {"call_id": call.get("id"), "tool": call.get("name"), "ok": False, "content": reason}
            if ran_ms is not None:
                payload["duration_ms"] = ran_ms.get(str(call.get("id")), 0)
            results.append(("tool_result", payload))
        await session.append_many(results)
    return len(open_calls)


def calls_awaiting_approval(session: SessionLog) -> list[ToolCall]:
    """The open tool calls of a turn stopped while asking a person (none of them ran yet), or [].

    Approvals are all asked before any call of a batch runs, so while one is pending the whole
    batch can safely be taken up again. Only the latest batch counts, by position: its call ids
    may repeat those of earlier batches (models number their calls anew in every reply).
    """
    if not session.state.pending_approvals:
        return []
    pending = {a.get("call_id") for a in session.state.pending_approvals}
    open_calls = [
        ToolCall(str(c.get("id")), str(c.get("name")), dict(c.get("arguments") or {}))
        for c in session.state.open_calls_of_last_batch()
    ]
    return open_calls if any(c.id in pending for c in open_calls) else []


def needs_model(session: SessionLog) -> bool:
    """True when the last durable step leaves the model to speak (a user message or tool results).

    Silent user messages (group chat messages kept as context, not addressed to the agent) owe no
    reply, so they are looked past; so is a reply a stop or a crash cut off (`partial`, left out
    when the turn starts again: `attempt_restarted`). A turn that ended in an error or was
    cancelled is over: the model owes it nothing more, even though its last step was a user
    message or tool results.
    """
    if session.state.turn_closed_by is not None:
        return False
    return owes_reply(session.state.conversation, past_partial=True)


def can_run_again(state: SessionState) -> bool:
    """Whether running a failed or cancelled turn again gives the model a step to answer: the
    person's message or tool results (with the partial reply a cut stream kept after them, which
    `turn_retried` leaves out of the conversation), or tool calls a failure left without a result
    (answered `interrupted` before the model is asked)."""
    return owes_reply(state.conversation, past_partial=True) or bool(state.open_tool_calls())


def owes_reply(conversation: Sequence[Mapping[str, Any]], *, past_partial: bool = False) -> bool:
    """True when the conversation's last step (silent context looked past, and with `past_partial`
    a partial reply after it too) is the user's message or tool results: the model is to speak next."""
    for message in reversed(conversation):
        if message.get("role") == "user" and message.get("silent"):
            continue
        if past_partial and message.get("partial"):
            past_partial = False
            continue
        return message.get("role") in ("user", "tool")
    return False


async def drain(events: AsyncIterator[RuntimeEvent]) -> list[RuntimeEvent]:
    """Consume a turn's events into a list (for callers that only want the outcome)."""
    return [event async for event in events]
