"""`duragent agent list|show|validate|create`: a thin shell over `duragent.agents`."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from duragent.cli.context import CliState, print_json

if TYPE_CHECKING:
    from duragent.agents.catalog import AgentCatalog
    from duragent.agents.loader import Agent, Setting
    from duragent.errors import Problem
    from duragent.llm.base import Provider
    from duragent.llm.types import Message
    from duragent.runtime.context import AssembledContext
    from duragent.scaffold import FileAction

agent_app = typer.Typer(
    help="List, inspect, validate and create agents.", no_args_is_help=True, rich_markup_mode=None
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def register(app: typer.Typer) -> None:
    """Add the `agent` command group to the app."""
    app.add_typer(agent_app, name="agent")


@agent_app.command("list")
def list_agents(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List the workspace's agents: name, description, model and folder."""
    catalog = _catalog(ctx)
    agents, errors = catalog.load_all()
    rows = [_agent_row(agent) for agent in agents] + [_invalid_row(error) for error in errors]
    rows.sort(key=lambda row: str(row["name"]))
    if errors:
        count = len(errors)
        print(
            f"warning: {count} agent{'s' if count > 1 else ''} cannot be loaded; "
            "see `duragent agent validate`",
            file=sys.stderr,
        )
    if as_json:
        print_json(rows)
        return
    if not rows:
        print(f"no agents in {_shown(catalog.agents_dir)} (create one: duragent agent create NAME)")
        return
    table = [("NAME", "DESCRIPTION", "MODEL", "PATH")]
    for row in rows:
        model = f"{row['provider']}/{row['model']}" if row["valid"] else "(invalid)"
        description = " ".join(str(row["description"]).split())  # (one row per agent)
        table.append((str(row["name"]), _shorten(description, 48), model, str(row["path"])))
    _print_table(table)


@agent_app.command("show")
def show_agent(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The agent's name (its folder name).")],
    as_json: JsonOption = False,
) -> None:
    """Show an agent's definition, its effective session settings and where each came from."""
    from duragent.agents.loader import session_settings

    state = _state(ctx)
    agent, warnings = _catalog(ctx).load(name)
    settings = session_settings(agent, state.config())
    found = _skills_and_tool_folders(agent, state.config().data_path)
    if as_json:
        print_json(
            _agent_details(agent, settings, warnings)
            | {"workdir": _shown(state.config().tool_workdir(agent.name))}
            | found
        )
        return
    _print_details(agent, settings, state.config().tool_workdir(agent.name))
    print(f"skills       {', '.join(found['skills']) or '(none)'}")
    print(f"tool folders {', '.join(found['tool_folders']) or '(none)'}")
    _print_warnings(warnings)


def _skills_and_tool_folders(agent: Agent, data_dir: Path) -> dict[str, list[str]]:
    """The names of the skills and tool folders the agent has (its own and the workspace's)."""
    from duragent.skills.discovery import discover_skills
    from duragent.tools.folders import discover_tool_folders

    skills = discover_skills(agent.directory, data_dir, agent.spec.skills_dir)
    folders, _problems = discover_tool_folders(agent.directory, data_dir)
    return {"skills": sorted(skills.skills), "tool_folders": sorted(folders)}


@agent_app.command("context")
def agent_context(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The agent's name.")],
    session: Annotated[
        str | None,
        typer.Option(
            "--session",
            "-s",
            help="Use this session's conversation and working memory "
            "(its id, its name or a unique start of the id).",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Print exactly what the agent's next model request would contain (memory included)."""
    from duragent.cli.context import run_async
    from duragent.ids import resolve_session
    from duragent.mcp.hub import McpHub
    from duragent.runtime.loop import Runtime
    from duragent.runtime.memory_context import session_folder
    from duragent.sessions.state import SessionState, resume
    from duragent.workspace import Workspace

    config = _state(ctx).config()

    async def run() -> tuple[AssembledContext, int, list[str]]:
        async with Workspace(config) as workspace:
            agent = workspace.agents.get(name)
            sessions = workspace.stores.sessions
            session_id = session
            if session is not None:
                # like every other --session: the whole id, the session's name or a unique start of the id
                session_id = resolve_session(session, ((s.session_id, s.name) for s in await sessions.list()))
            state = await resume(sessions, session_id) if session_id else SessionState(session_id="preview")
            folder = session_folder(sessions, session_id) if session_id else None
            # The turn's own tools and budget, from the runtime that runs turns (it asks no model here).
            runtime = Runtime(
                provider_for=_no_provider,
                memory=workspace.stores.memory,
                data_dir=config.data_path,
                web_search=config.web_search,
            )
            context, tools = await runtime.preview_context(agent, state, folder)
            # Listing MCP servers' tools means starting them (processes, connections): not for a look.
            hub = McpHub(
                config.mcp_servers,
                workspace_dir=config.base_dir,
                workdir_for=lambda loaded: config.tool_workdir(loaded.name),
            )
            return context, tools, [spec.name for _scope, spec in hub.configured(agent)]

    assembled, tools, mcp_servers = run_async(run())
    if as_json:
        print_json(
            {
                "messages": [_message_json(message) for message in assembled.messages],
                "parts": [{"name": p.name, "tokens": p.tokens} for p in assembled.parts],
                "tokens": assembled.tokens,
                "budget": assembled.budget,
                "history_kept": assembled.history_kept,
                "history_dropped": assembled.history_dropped,
                "tools": {
                    "count": tools,
                    "tokens": assembled.tools_tokens,
                    "mcp_servers_not_counted": mcp_servers,
                },
            }
        )
        return
    for message in assembled.messages:
        _print_message(message)
    print(
        f"({assembled.tokens} of {assembled.budget} tokens; "
        + ", ".join(f"{p.name} {p.tokens}" for p in assembled.parts)
        + f"; tools: {tools} definitions, ~{assembled.tools_tokens} tokens"
        + f"; {assembled.history_kept} messages kept, {assembled.history_dropped} dropped)",
        file=sys.stderr,
    )
    if mcp_servers:
        print(
            f"(not counted: the tools of MCP servers {', '.join(mcp_servers)}, which a turn offers too; "
            "they are known only once a server starts, and agent context starts none: a turn may keep "
            "less than shown)",
            file=sys.stderr,
        )


def _no_provider(agent: Agent) -> Provider:
    """`agent context` builds a request, never sends one."""
    raise AssertionError(f"agent context asked for {agent.name}'s model")


def _message_json(message: Message) -> dict[str, Any]:
    """A message of `agent context --json`: its role and content, and the tool calls it makes or
    answers (the ids pair each result with its call, as the model is sent them)."""
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [
            {"id": call.id, "name": call.name, "arguments": call.arguments} for call in message.tool_calls
        ]
    if message.tool_call_id is not None:
        out |= {"tool_call_id": message.tool_call_id, "name": message.name}
    if message.is_error:
        out["is_error"] = True
    return out


def _print_message(message: Message) -> None:
    """One message of `agent context`: a heading, its text, then each tool call it makes."""
    import json

    heading = ""
    if message.tool_call_id is not None:
        failed = ", failed" if message.is_error else ""
        heading = f" ({message.name or 'result'} {message.tool_call_id}{failed})"
    print(f"===== {message.role}{heading} =====")
    if message.content:
        print(message.content)
    for call in message.tool_calls:
        print(f"-> {call.name} {call.id} {json.dumps(call.arguments, ensure_ascii=False)}")


@agent_app.command("validate")
def validate_agents(
    ctx: typer.Context,
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Agent names, folders or agent.yaml files (default: every agent in the workspace)."
        ),
    ] = None,
) -> None:
    """Check agent definitions; print every problem as file:line:column and exit 2 if any."""
    from duragent.agents.loader import discover_agents, validate_agent_folder

    if paths:
        directories = [folder for path in paths for folder in _agent_folders(path, ctx)]
    else:
        agents_dir = _state(ctx).config().agents_path
        directories = discover_agents(agents_dir)
        if not directories:
            print(f"ok: 0 agents valid (no agents in {_shown(agents_dir)})")
            return
    shared_invalid = not paths and _report_workspace_folders(_state(ctx).config().data_path)
    shared_web_search = _state(ctx).config().web_search is not None
    invalid = 0
    for directory in directories:
        problems, warnings = validate_agent_folder(directory, shared_web_search=shared_web_search)
        if problems:
            invalid += 1
            for problem in problems:
                print(problem)
            continue
        _print_warnings(warnings, stream=sys.stdout)
    total = len(directories)
    if invalid:
        print(f"{invalid} of {total} agent{'s' if total > 1 else ''} invalid", file=sys.stderr)
    if shared_invalid:
        print("the workspace's skills/ or tools/ folder has invalid entries", file=sys.stderr)
    if invalid or shared_invalid:
        raise typer.Exit(2)
    print(f"ok: {total} agent{'s' if total != 1 else ''} valid")


def _report_workspace_folders(data_dir: Path) -> bool:
    """Print the problems of the workspace-wide skills and tool folders; True when there are any."""
    from duragent.skills.discovery import scan_folder, shared_skills_dir
    from duragent.tools.folders import TOOLS_FOLDER, scan_tool_folders

    problems = scan_folder(shared_skills_dir(data_dir), "workspace")[1]
    problems += scan_tool_folders(data_dir / TOOLS_FOLDER)[1]
    for problem in problems:
        print(problem)
    return bool(problems)


@agent_app.command("create")
def create_agent(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Name of the new agent (letters, digits, '-', '_').")],
    from_agent: Annotated[
        str | None, typer.Option("--from", help="Copy this existing agent instead of the template.")
    ] = None,
    provider: Annotated[
        str | None, typer.Option("--provider", help="openai, anthropic, openrouter, ollama or demo.")
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="Model name as the provider knows it.")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Rewrite existing files (a .bak copy is kept).")
    ] = False,
) -> None:
    """Create an agent folder from the template, or as a copy of another agent."""
    from duragent.agents.loader import load_agent

    agents_dir = _state(ctx).config().agents_path
    if from_agent is not None:
        actions = _catalog(ctx).copy(from_agent, name, provider=provider, model=model, force=force)
    else:
        actions = _write_from_template(agents_dir, name, provider, model, force)
    if any(action.action != "skipped" for action in actions):
        actions += _write_long_term_memory(ctx, name)
    _print_actions(actions)
    if all(action.action == "skipped" for action in actions):
        print(f"agent '{name}' already exists; nothing written (--force rewrites its files)")
        return
    load_agent(agents_dir / name)
    print(f"agent '{name}' is ready: duragent agent show {name}")


def _write_from_template(
    agents_dir: Path, name: str, provider: str | None, model: str | None, force: bool
) -> list[FileAction]:
    from duragent.scaffold import DEFAULT_MODELS, detect_provider, write_agent

    if provider is None:
        choice = detect_provider()
        provider, model = choice.provider, model or choice.model
    model = model or DEFAULT_MODELS.get(provider, "")
    return write_agent(agents_dir, name, provider=provider, model=model, force=force)


def _write_long_term_memory(ctx: typer.Context, name: str) -> list[FileAction]:
    """The new agent's MEMORY.md from the template, as `init` writes it (none with PostgreSQL memory)."""
    from duragent.scaffold import write_long_term_memory

    config = _state(ctx).config()
    if config.services.memory.backend != "filesystem":
        return []
    return [write_long_term_memory(config.service_path("memory"), name)]


def _state(ctx: typer.Context) -> CliState:
    state = ctx.find_root().obj
    return state if isinstance(state, CliState) else CliState()


def _catalog(ctx: typer.Context) -> AgentCatalog:
    from duragent.agents.catalog import AgentCatalog

    return AgentCatalog(_state(ctx).config().agents_path)


def _agent_folders(path: Path, ctx: typer.Context) -> list[Path]:
    """The agent folders a command-line argument names: a folder, an agent.yaml, a folder of
    agents, or (like `agent show NAME`) the name of one of the workspace's agents."""
    from duragent.agents.loader import AGENT_FILENAME, discover_agents
    from duragent.errors import UsageError

    if not path.exists() and len(path.parts) == 1:
        agents_dir = _state(ctx).config().agents_path
        if (agents_dir / path.name / AGENT_FILENAME).is_file():
            return [agents_dir / path.name]
        known = ", ".join(folder.name for folder in discover_agents(agents_dir)) or "none"
        raise UsageError(f"{path}: no such file or folder, nor an agent of this workspace (agents: {known})")
    if path.is_file():
        if path.name != AGENT_FILENAME:
            raise UsageError(
                f"{path}: not an {AGENT_FILENAME} (give an agent folder or its {AGENT_FILENAME})"
            )
        return [path.parent]
    if not path.is_dir():
        raise UsageError(f"{path}: no such file or folder")
    if (path / AGENT_FILENAME).is_file():
        return [path]
    found = discover_agents(path) or discover_agents(path / "agents")
    if not found:
        raise UsageError(f"{path}: no {AGENT_FILENAME} here or in its subfolders")
    return found


def _shown(path: Path) -> str:
    from duragent.agents.loader import display_path

    return display_path(path)


def _agent_row(agent: Agent) -> dict[str, Any]:
    return {
        "name": agent.name,
        "description": agent.description,
        "provider": agent.spec.model.provider,
        "model": agent.spec.model.name,
        "path": _shown(agent.directory),
        "valid": True,
    }


def _invalid_row(error: Exception) -> dict[str, Any]:
    from duragent.agents.catalog import InvalidAgent

    assert isinstance(error, InvalidAgent)
    return {
        "name": error.name,
        "description": "",
        "provider": None,
        "model": None,
        "path": _shown(error.directory),
        "valid": False,
        "problems": [str(problem) for problem in error.problems],
    }


def _setting_text(setting: Setting[Any]) -> str:
    from datetime import timedelta

    from duragent.durations import format_duration

    value = setting.value
    return format_duration(value) if isinstance(value, timedelta) else str(value)


def _prompt_details(agent: Agent) -> dict[str, dict[str, Any]]:
    from duragent.agents.loader import PROMPT_FIELDS

    details: dict[str, dict[str, Any]] = {}
    for field in PROMPT_FIELDS:
        text: str = getattr(agent, field)
        file = agent.prompt_files.get(field)
        if file is not None:
            details[field] = {"file": _shown(file), "bytes": file.stat().st_size, "chars": len(text)}
        elif text:
            details[field] = {"file": None, "bytes": len(text.encode()), "chars": len(text)}
        else:
            details[field] = {"file": None, "bytes": 0, "chars": 0}
    return details


def _context_details(agent: Agent) -> dict[str, Any]:
    """The context window, where it comes from, and what of it the prompts and conversation get."""
    from duragent.runtime.context import context_budget, context_window

    own = agent.spec.context.max_tokens is not None
    source = str(agent.locate(("spec", "context", "max_tokens"))) if own else "the model's known window"
    if not own and agent.spec.model.provider == "ollama":
        # Ollama serves less unless told otherwise (4k on smaller machines), cutting the rest
        source += "; Ollama may serve less: set context.max_tokens to its context length"
    return {"window": context_window(agent), "source": source, "budget": context_budget(agent)}


def _agent_details(
    agent: Agent, settings: dict[str, Setting[Any]], warnings: list[Problem]
) -> dict[str, Any]:
    return {
        "name": agent.name,
        "description": agent.description,
        "path": _shown(agent.directory),
        "source": _shown(agent.source),
        "definition": agent.document.model_dump(mode="json", by_alias=True),
        "session": {
            key: {"value": _setting_text(setting) if key == "max_background_runtime" else setting.value}
            | {"source": setting.source}
            for key, setting in settings.items()
        },
        "context": _context_details(agent),
        "prompts": _prompt_details(agent),
        "warnings": [str(warning) for warning in warnings],
    }


def _print_details(agent: Agent, settings: dict[str, Setting[Any]], workdir: Path) -> None:
    model = agent.spec.model
    key = f"  (API key from ${model.key_variable})" if model.key_variable else ""
    print(f"agent        {agent.name}")
    if agent.description:
        print(f"description  {agent.description}")
    print(f"folder       {_shown(agent.directory)}")
    print(f"workdir      {_shown(workdir)}  (where its tools run)")
    print(f"model        {model.provider}/{model.name}{key}")
    context = _context_details(agent)
    print(
        f"context      {context['window']}-token window ({context['source']}), "
        f"{context['budget']} for prompts and conversation"
    )
    print("session")
    _print_table(
        [(f"  {name}", _setting_text(setting), f"({setting.source})") for name, setting in settings.items()],
    )
    print("prompts")
    rows = []
    for field, detail in _prompt_details(agent).items():
        if detail["file"]:
            rows.append((f"  {field}", str(detail["file"]), f"{detail['bytes']} bytes"))
        elif detail["chars"]:
            rows.append((f"  {field}", "(inline)", f"{detail['chars']} chars"))
        else:
            rows.append((f"  {field}", "(not set)", ""))
    _print_table(rows)
    memory = agent.spec.memory
    memory_text = f"on, {memory.recent_days} recent days" if memory and memory.enabled else "off"
    print(f"memory       {memory_text}")
    tools = list(agent.spec.tools.builtin) + [f"{tool.name} (cli)" for tool in agent.spec.tools.cli]
    print(f"tools        {', '.join(tools) if tools else '(none)'}")
    if agent.spec.mcp_servers:
        servers = [f"{server.name} ({server.transport})" for server in agent.spec.mcp_servers]
        print(f"mcp servers  {', '.join(servers)}  (duragent mcp list shows their tools)")


def _print_actions(actions: list[FileAction]) -> None:
    for action in actions:
        note = f"  (previous version kept as {_shown(action.backup)})" if action.backup else ""
        note = note or ("  (exists, left alone)" if action.action == "skipped" else "")
        print(f"{action.action:<11} {_shown(action.path)}{note}")


def _print_warnings(warnings: list[Problem], *, stream: Any = None) -> None:
    for warning in warnings:
        where = f"{warning.location}: " if warning.location else ""
        print(f"{where}warning: {warning.message}", file=stream or sys.stderr)


def _print_table(rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
