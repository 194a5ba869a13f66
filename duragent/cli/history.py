"""`duragent history`: the data repository's git log as a timeline of what happened."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from duragent.cli.context import CliState, print_json
from duragent.terminal_text import printable

if TYPE_CHECKING:
    from duragent.config import DuragentConfig

#: The kinds of change a commit of the data repository records (its `Duragent-Kind` trailer).
HISTORY_KINDS = ("session", "memory", "artifact", "agent", "edit", "schedule", "process")


def register(root: typer.Typer) -> None:
    """Add the `history` command."""
    root.command("history")(history)


def history(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("-n", "--limit", min=1, help="How many entries.")] = 20,
    agent: Annotated[str | None, typer.Option("--agent", "-a", help="Only changes of this agent.")] = None,
    session: Annotated[
        str | None, typer.Option("--session", "-s", help="Only changes of this session.")
    ] = None,
    memory: Annotated[bool, typer.Option("--memory", "-m", help="Only changes to memory files.")] = False,
    author: Annotated[
        str | None, typer.Option("--author", help="agent (Duragent's commits) or human (a person's).")
    ] = None,
    kind: Annotated[
        str | None,
        typer.Option("--kind", "-k", help="session, memory, artifact, agent, edit, schedule or process."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """What the agents (and people) changed, newest first, from `git log` of the data directory."""
    from duragent.cli.revisions import not_a_repository
    from duragent.errors import UsageError
    from duragent.vcs.history import read_history

    state: CliState = ctx.obj
    config = state.config()
    if not (config.data_path / ".git").exists():
        raise not_a_repository(config)
    if author not in (None, "agent", "human"):
        raise UsageError(f"invalid --author {author!r}: use agent or human")
    if kind is not None and kind not in HISTORY_KINDS:
        raise UsageError(f"invalid --kind {kind!r}: use one of {', '.join(HISTORY_KINDS)}")
    memory_path = None
    if memory:
        folder = config.service_path("memory")
        if not folder.is_relative_to(config.data_path):
            raise UsageError(f"memory is kept outside the data repository ({folder})")
        memory_path = folder.relative_to(config.data_path).as_posix()
    if session is not None:
        session = _full_session_id(config, session)
    entries = read_history(
        config.data_path,
        limit=limit,
        agent=agent,
        session=session,
        kind=kind,
        author="agent" if author == "agent" else "human" if author == "human" else None,
        agent_author=config.git.author,
        path=memory_path,
    )
    if as_json:
        print_json([_entry_json(e) for e in entries])
        return
    if not entries:
        filtered = any(value for value in (agent, session, memory, author, kind))
        print("No change matches these options." if filtered else "No history yet.")
        return
    # a person's whole name, never cut: the column is as wide as the longest name shown
    names = ["agent" if entry.author_kind == "agent" else _name(entry.author) for entry in entries]
    width = max(len(name) for name in names)
    for entry, who in zip(entries, names, strict=True):
        when = entry.when.astimezone().strftime("%Y-%m-%d %H:%M")
        print(printable(f"{entry.short}  {when}  {who:<{width}}  {entry.subject}"))


def _full_session_id(config: DuragentConfig, text: str) -> str:
    """The session `text` names (its id, its name or a unique start of its id), as `session show`
    reads it; when no stored session is named so, the one in git's history whose id starts with
    `text` (a deleted session), else `text` itself."""
    from duragent.cli.context import run_async
    from duragent.ids import resolve_prefix, resolve_session
    from duragent.workspace import Workspace

    async def resolve() -> tuple[str, list[str]]:
        async with Workspace(config) as workspace:
            listed = await workspace.stores.sessions.list()
        ids = [s.session_id for s in listed]
        return resolve_session(text, ((s.session_id, s.name) for s in listed)), ids

    found, stored = run_async(resolve())
    if found in stored:
        return str(found)
    return resolve_prefix(text, [*stored, *_sessions_in_history(config, text)])


def _sessions_in_history(config: DuragentConfig, start: str) -> list[str]:
    """Ids starting with `start` of the sessions whose folders git's history holds."""
    from duragent.vcs.repo import GitRepo

    folder = config.service_path("session")
    if not folder.is_relative_to(config.data_path):
        return []
    root = folder.relative_to(config.data_path).as_posix()
    repo = GitRepo.open_or_init(config.data_path, create=False)
    if repo.head() is None:
        return []
    # (git's paths are literal, never globs: every session folder added is listed, then matched)
    args = ["log", "--format=", "--name-only", "--no-renames", "--diff-filter=A", "-z", "--", root]
    found: dict[str, None] = {}
    for name in "".join(repo.stream(args)).split("\0"):
        session, _, rest = name.strip("\n").removeprefix(f"{root}/").partition("/")
        if rest and session.startswith(start):
            found[session] = None
    return list(found)


def _name(author: str) -> str:
    """`Ada Lovelace <ada@example.org>` -> `Ada Lovelace` (the email is in `--json`)."""
    name = author.split("<", 1)[0].strip()
    return name or author


def _entry_json(entry: Any) -> dict[str, Any]:
    return {
        "sha": entry.sha,
        "when": entry.when.isoformat(),
        "author": entry.author,
        "author_kind": entry.author_kind,
        "subject": entry.subject,
        "kinds": list(entry.kinds),
        "sessions": list(entry.sessions),
        "agents": list(entry.agents),
        "files": list(entry.files),
    }
