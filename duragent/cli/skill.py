"""`duragent skill list|show|add|remove`: a thin shell over `duragent.skills`."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from duragent.cli.context import CliState, print_json

if TYPE_CHECKING:
    from duragent.errors import Problem
    from duragent.skills.discovery import SkillSet
    from duragent.skills.skill import Skill
    from duragent.workspace import Workspace

skill_app = typer.Typer(
    help="List, show, add and remove Agent Skills (SKILL.md folders).",
    no_args_is_help=True,
    rich_markup_mode=None,
)

AgentOption = Annotated[
    str | None,
    typer.Option("--agent", "-a", help="The agent's own skills (default: the workspace-wide skills/)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def register(app: typer.Typer) -> None:
    """Add the `skill` command group to the app."""
    app.add_typer(skill_app, name="skill")


@skill_app.command("list")
def list_skills(
    ctx: typer.Context,
    agent: Annotated[
        str | None, typer.Option("--agent", "-a", help="Only the skills this agent sees (its own win).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """List skills: the workspace's and every agent's own, or what one agent sees."""
    found = _visible(ctx, agent)
    rows = [_row(skill, owner) for owner, skills in found for skill in skills.sorted()]
    problems = [problem for _, skills in found for problem in skills.problems]
    if problems:
        print(
            f"warning: {len(problems)} invalid skill problem(s) (skipped); see `duragent agent validate`",
            file=sys.stderr,
        )
    if as_json:
        print_json(rows)
        return
    if not rows:
        print("no skills (add one: duragent skill add PATH|GIT_URL)")
        return
    table = [("NAME", "SCOPE", "DESCRIPTION", "PATH")]
    table += [(row["name"], row["scope"], _shorten(row["description"], 60), row["path"]) for row in rows]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for line in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())


@skill_app.command("show")
def show_skill(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The skill's name.")],
    agent: Annotated[
        str | None, typer.Option("--agent", "-a", help="Look among this agent's skills too.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Show a skill: where it is, its front matter, its files and its instructions."""
    from duragent.errors import ConfigError
    from duragent.skills.install import SkillNotFound

    visible = _visible(ctx, agent)
    matches = [(skill, owner) for owner, skills in visible for skill in skills.sorted()]
    chosen = [(skill, owner) for skill, owner in matches if skill.name == name]
    if not chosen:
        # a folder of that name that is not a valid skill (yet): say what is wrong with it
        invalid = [
            problem for _, skills in visible for problem in skills.problems if _of_folder(problem, name)
        ]
        if invalid:
            raise ConfigError(invalid)
        known = ", ".join(sorted({skill.name for skill, _ in matches})) or "none"
        raise SkillNotFound(f"no skill {name!r}; skills: {known}")
    skill, owner = chosen[-1]
    details = _row(skill, owner) | {"files": skill.files(), "instructions": skill.instructions}
    if as_json:
        print_json(details)
        return
    for key in ("name", "description", "scope", "path", "license", "allowed_tools"):
        value = details[key]
        if value:
            shown = " ".join(value) if isinstance(value, list) else str(value)
            print(f"{key.replace('_', '-') + ':':<15}{shown}")
    for key, value in skill.metadata.items():
        print(f"{'metadata:':<15}{key}: {value}")
    if details["files"]:
        print("files:")
        for file in details["files"]:
            print(f"  {file}")
    print()
    print(skill.instructions)


@skill_app.command("add")
def add(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(help="A skill folder, or a git URL (https://, git@, file://).")],
    agent: AgentOption = None,
    path: Annotated[
        str | None, typer.Option("--path", help="The skill's folder inside a source holding several.")
    ] = None,
    ref: Annotated[
        str | None,
        typer.Option("--ref", help="The branch, tag or full commit id of a git source (default: HEAD)."),
    ] = None,
) -> None:
    """Copy a skill folder (or clone a repository's) into the workspace, validate it, commit it."""
    from duragent.skills.install import staged_skill

    with _workspace(ctx) as workspace:
        target = _skills_dir(workspace, agent)
        staging = staged_skill(source, target, subpath=path, ref=ref, guard=workspace.guard)
        with staging as staged, _commits_held(workspace):
            installed = staged.place()
            where = f"agent {agent}" if agent else "the workspace"
            print(f"added skill {installed.skill.name!r} to {where}: {_shown(installed.skill.directory)}")
            origin = installed.origin(source, ref, path)
            if installed.commit or path:
                print(f"  from {origin}")
            _commit(workspace, list(installed.files), f"skill {installed.skill.name} added from {origin}")


@skill_app.command("remove")
def remove(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The skill's name.")],
    agent: AgentOption = None,
) -> None:
    """Delete a skill folder and commit the removal."""
    from duragent.skills.install import SkillNotFound, remove_skill

    with _workspace(ctx) as workspace:
        target = _skills_dir(workspace, agent)
        with _commits_held(workspace):
            try:
                files = remove_skill(name, target)
            except SkillNotFound as exc:
                raise SkillNotFound(f"{exc}{_found_elsewhere(ctx, name, agent)}") from None
            print(f"removed skill {name!r} ({len(files)} file{'s' if len(files) != 1 else ''})")
            _commit(workspace, list(files), f"skill {name} removed")


def _of_folder(problem: Problem, name: str) -> bool:
    """Whether `problem` is about the SKILL.md of a skill folder named `name`."""
    file = problem.location.file if problem.location is not None else None
    return file is not None and Path(file).parent.name == name


def _found_elsewhere(ctx: typer.Context, name: str, agent: str | None) -> str:
    """A hint naming the command that removes `name` where it is (the workspace's or an agent's own)."""
    for owner, skills in _visible(ctx, None):
        if owner == (agent or "workspace") or name not in skills.skills:
            continue
        where = "" if owner == "workspace" else f" --agent {owner}"
        scope = "a workspace skill" if owner == "workspace" else f"agent {owner}'s own"
        return f" ({name!r} is {scope}: duragent skill remove {name}{where})"
    return ""


def _state(ctx: typer.Context) -> CliState:
    state = ctx.find_root().obj
    return state if isinstance(state, CliState) else CliState()


@contextlib.contextmanager
def _workspace(ctx: typer.Context) -> Iterator[Workspace]:
    """The workspace for a command that changes files, closed (committer included) on exit."""
    from duragent.cli.context import run_async
    from duragent.workspace import Workspace

    workspace = Workspace(_state(ctx).config())
    workspace.commit_offline_edits()
    try:
        yield workspace
    finally:
        run_async(workspace.close())


def _visible(ctx: typer.Context, agent: str | None) -> list[tuple[str, SkillSet]]:
    """(owner, skills) pairs: what `agent` sees, or the workspace's and every agent's own."""
    from duragent.agents.catalog import AgentCatalog
    from duragent.skills.discovery import SkillSet, discover_skills

    config = _state(ctx).config()
    catalog = AgentCatalog(config.agents_path)
    if agent is not None:
        loaded, _ = catalog.load(agent)
        return [(agent, discover_skills(loaded.directory, config.data_path, loaded.spec.skills_dir))]
    found: list[tuple[str, SkillSet]] = [("workspace", discover_skills(None, config.data_path))]
    agents, _errors = catalog.load_all()
    for loaded in sorted(agents, key=lambda a: a.name):
        own = discover_skills(loaded.directory, None, loaded.spec.skills_dir)
        found.append((loaded.name, SkillSet(own.skills, own.problems)))
    return found


def _skills_dir(workspace: Workspace, agent: str | None) -> Path:
    from duragent.skills.discovery import agent_skills_dir, shared_skills_dir

    if agent is None:
        return shared_skills_dir(workspace.config.data_path)
    loaded = workspace.agents.get(agent)
    return agent_skills_dir(loaded.directory, loaded.spec.skills_dir)


def _commits_held(workspace: Workspace) -> contextlib.AbstractContextManager[object]:
    """Other commits wait from the change until its commit: a running server's edit watcher
    would otherwise commit a change it saw first as a bare edit, without the command's message."""
    edits = workspace.human_edits
    return edits.repo.holding_commits() if edits is not None else contextlib.nullcontext()


def _commit(workspace: Workspace, files: list[Path], summary: str) -> None:
    """Commit the person's change to `files` (added or deleted) and say so."""
    edits = workspace.human_edits
    if edits is None:
        print("(git is disabled: not committed)")
        return
    try:
        relative = [edits.repo.relative(path) for path in files]
    except ValueError:
        # (an agents folder outside the data directory: `agents.static.path: ./agents`)
        print(f"(not in the data repository {edits.repo.root}: not committed)")
        return
    result = edits.commit(relative, summary=summary)
    if result.sha:
        print(f"committed {result.sha[:10]} as {edits.repo.person_identity()}")


def _row(skill: Skill, owner: str) -> dict[str, Any]:
    scope = "workspace" if skill.scope == "workspace" else f"agent:{owner}"
    return {
        "name": skill.name,
        "description": skill.description,
        "scope": scope,
        "path": _shown(skill.directory),
        "license": skill.license,
        "allowed_tools": list(skill.allowed_tools) if skill.allowed_tools is not None else None,
        "metadata": dict(skill.metadata),
    }


def _shown(path: Path) -> str:
    from duragent.agents.loader import display_path

    return display_path(path)


def _shorten(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
