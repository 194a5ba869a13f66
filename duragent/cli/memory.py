"""`duragent memory ...`: read, edit, search, add to, export and import an agent's memory.

Every command first commits edits a person made while nothing ran (as that person), and the
changes these commands make are a person's too: committed under their git identity with a
`Duragent-Kind: edit` trailer, apart from the agent's own commits.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from duragent.cli.context import CliState, print_json, run_async

if TYPE_CHECKING:
    from duragent.stores.base import MemoryStore
    from duragent.workspace import Workspace

app = typer.Typer(help="Read, edit and search agents' memory.", no_args_is_help=True)

AgentArgument = Annotated[
    str | None, typer.Argument(help="Agent name (optional when there is only one agent).", show_default=False)
]
AgentOption = Annotated[str | None, typer.Option("--agent", "-a", help="Agent name.")]
DEFAULT_SHOWN_DAYS = 2


def register(root: typer.Typer) -> None:
    """Add the `memory` command group."""
    root.add_typer(app, name="memory")


def _open(ctx: typer.Context) -> Workspace:
    """The workspace, with edits made while nothing ran committed first."""
    from duragent.vcs.repo import RepoBusy, RepoLocked
    from duragent.workspace import Workspace

    state: CliState = ctx.obj
    workspace = Workspace(state.config())
    try:
        workspace.commit_offline_edits()
    except (RepoBusy, RepoLocked) as error:
        # (a rebase in progress): memory is still there to read and add to; committed later
        print(
            f"warning: edits made while Duragent was not running are not committed yet: {error}",
            file=sys.stderr,
        )
    return workspace


def _one_of(argument: str | None, option: str | None) -> str | None:
    """The agent given as an argument or as --agent (every memory command takes --agent)."""
    if argument and option and argument != option:
        from duragent.errors import UsageError

        raise UsageError(f"two agents given ({argument} and --agent {option}): give one")
    return argument or option


def _agent(workspace: Workspace, given: str | None) -> str:
    """The agent named, or the only one there is."""
    from duragent.errors import UsageError
    from duragent.ids import check_name

    if given:
        return check_name(given, "agent name")
    names = workspace.agents.names() if workspace.config.agents_path.is_dir() else []
    if not names:
        memory = workspace.config.service_path("memory")
        names = sorted(p.name for p in memory.iterdir() if p.is_dir() and _may_be_an_agent(p.name))
    if len(names) == 1:
        return names[0]
    if not names:
        raise UsageError("no agents yet: create one with `duragent agent create NAME`")
    raise UsageError(f"there are several agents ({', '.join(names)}); pick one with --agent NAME")


def _parse_day(text: str) -> date:
    from duragent.errors import UsageError

    try:
        return date.fromisoformat(text)
    except ValueError as error:
        raise UsageError(f"invalid date {text!r}: use YYYY-MM-DD") from error


@app.command("show")
def show(
    ctx: typer.Context,
    agent: AgentArgument = None,
    agent_option: AgentOption = None,
    day: Annotated[str | None, typer.Option("--date", "-d", help="Only this day (YYYY-MM-DD).")] = None,
    show_all: Annotated[bool, typer.Option("--all", help="Every daily file, not only the latest.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """MEMORY.md and the latest daily files (`--date` one day, `--all` every day)."""
    from duragent.errors import NotFound, UsageError

    if day and show_all:
        raise UsageError("use --date or --all, not both")
    chosen = _parse_day(day) if day else None

    async def run() -> dict[str, Any]:
        async with _open(ctx) as workspace:
            name = _agent(workspace, _one_of(agent, agent_option))
            store = workspace.stores.memory
            days = [chosen] if chosen else await store.days(name)
            if not chosen and not show_all:
                days = days[:DEFAULT_SHOWN_DAYS]
            texts = [(d, await store.read_day(name, d)) for d in days]
            if chosen and texts[0][1] is None:
                raise NotFound(f"{name} has no memory for {chosen.isoformat()}")
            long_term = None if chosen else await store.read_long_term(name)
            return {"agent": name, "long_term": long_term, "days": [(d, t) for d, t in texts if t]}

    shown = run_async(run())
    if as_json:
        print_json(_show_json(shown))
        return
    blocks = []
    if shown["long_term"]:
        blocks.append(f"==> MEMORY.md <==\n{shown['long_term'].rstrip()}")
    blocks += [f"==> {d.isoformat()}.md <==\n{text.rstrip()}" for d, text in shown["days"]]
    print("\n\n".join(blocks) if blocks else f"{shown['agent']} remembers nothing yet.")


def _show_json(shown: dict[str, Any]) -> dict[str, Any]:
    from duragent.memory.markdown import parse_daily

    return {
        "agent": shown["agent"],
        "long_term": shown["long_term"],
        "days": [
            {
                "date": d.isoformat(),
                "text": text,
                "entries": [{"section": e.section, "text": e.text} for e in parse_daily(text, d)],
            }
            for d, text in shown["days"]
        ],
    }


@app.command("edit")
def edit(
    ctx: typer.Context,
    agent: AgentArgument = None,
    agent_option: AgentOption = None,
    day: Annotated[str | None, typer.Option("--date", "-d", help="This day's file (default today).")] = None,
    long_term: Annotated[bool, typer.Option("--long-term", "-l", help="Edit MEMORY.md.")] = False,
) -> None:
    """Open a memory file in $VISUAL/$EDITOR; what you save is committed as your edit.

    The editor gets a copy. What changed in the file while it was open (the agent remembering
    something) is kept: your edit is merged into it. With memory in PostgreSQL the stored text
    is edited and written back through the store, unless it changed while the editor was open.
    """
    import tempfile

    from duragent.errors import DuragentError, UsageError
    from duragent.memory.files import commit_agents_write_first
    from duragent.stores.base import utcnow
    from duragent.stores.filesystem.atomic import write_atomic
    from duragent.stores.filesystem.locks import memory_file_lock

    if day and long_term:
        raise UsageError("use --date or --long-term, not both")
    chosen = None if long_term else (_parse_day(day) if day else utcnow().date())
    state: CliState = ctx.obj
    if state.config().services.memory.backend != "filesystem":
        run_async(_edit_stored(ctx, _one_of(agent, agent_option), chosen))
        return
    with _open_sync(ctx) as workspace:
        name = _agent(workspace, _one_of(agent, agent_option))
        root = workspace.config.service_path("memory")
        if chosen is None:
            path, template = root / name / "MEMORY.md", _template(name, None)
        else:
            path, template = root / name / f"{chosen.isoformat()}.md", _template(name, chosen)
        before = _text_of(path) if path.exists() else None
        given = template if before is None else before
        # The editor gets a copy: the agent may write the file while it is open, and an editor
        # saving its whole buffer back over it would silently drop what the agent wrote.
        with tempfile.TemporaryDirectory(prefix="duragent-memory-") as folder:
            copy = Path(folder) / path.name
            copy.write_text(given, encoding="utf-8", errors="surrogateescape")
            _run_editor(copy)
            after = _text_of(copy) if copy.exists() else given
        if after == given:
            print("No changes.")
            return
        with memory_file_lock(root, path):
            found = commit_agents_write_first(workspace, path)
            current = None if found is None else found.decode("utf-8", errors="surrogateescape")
            if current != before:
                merged = _merge_edits(current or "", given, after)
                if merged is None:
                    kept = Path.cwd() / f"{name}-{path.name}.edited"
                    kept.write_text(after, encoding="utf-8", errors="surrogateescape")
                    raise DuragentError(
                        f"{path} changed while it was being edited and could not be merged; nothing "
                        f"was written: your version is saved in {kept}; run `duragent memory edit` "
                        "again and merge it into the current text"
                    )
                print("Merged your edit with what changed in the file while the editor was open.")
                after = merged
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, after.encode("utf-8", errors="surrogateescape"))
        _commit_edit(workspace, [path])


def _text_of(path: Path) -> str:
    """The file's text with its line endings as they are (`read_text` would turn CRLF into LF,
    and the save would then rewrite every line of a file written on Windows), and its bytes that
    are not UTF-8 (a Latin-1 `é`) kept as lone surrogates, written back as the same bytes."""
    return path.read_bytes().decode("utf-8", errors="surrogateescape")


def _merge_edits(current: str, given: str, edited: str) -> str | None:
    """The person's edit (`given` -> `edited`) applied to `current` by a three-way merge
    (`git merge-file --union`: where both changed the same lines, both versions are kept, the
    file's first; memory is lists of notes, and nothing anyone wrote is dropped), or None when
    git could not merge."""
    from duragent.vcs.repo import GitError, merge_texts

    try:
        merged, conflicted = merge_texts(current, given, edited, union=True)
    except (OSError, GitError, UnicodeError):  # UnicodeError: bytes that are not UTF-8
        return None
    return None if conflicted else merged


def _template(name: str, day: date | None) -> str:
    """What a new file starts as in the editor."""
    return f"# Long-term memory of {name}\n\n" if day is None else f"# {day.isoformat()}\n\n"


def _run_editor(path: Path) -> None:
    """Open `path` in $VISUAL/$EDITOR (vi) and wait; a failing editor is reported, not fatal."""
    import os
    import shlex
    import subprocess

    variable = next((name for name in ("VISUAL", "EDITOR") if os.environ.get(name)), None)
    editor = os.environ[variable] if variable else "vi"
    try:
        done = subprocess.run([*shlex.split(editor), str(path)], check=False)
    except (FileNotFoundError, PermissionError):
        from duragent.errors import UsageError

        named = f"${variable} names {editor!r}" if variable else "neither $VISUAL nor $EDITOR is set and vi"
        raise UsageError(
            f"cannot run the editor: {named}, which is not installed here; set EDITOR to one that is "
            "(e.g. export EDITOR=nano)"
        ) from None
    if done.returncode != 0:
        print(f"warning: the editor exited with status {done.returncode}", file=sys.stderr)


async def _edit_stored(ctx: typer.Context, agent: str | None, day: date | None) -> None:
    """`memory edit` with memory in a database: edit the stored text, write it back if unchanged there.

    The text goes to a private temporary file for the editor; what is saved is written through
    the memory store only if the stored text is still what the editor was given. When someone
    (the agent, another person) changed it meanwhile, nothing is written and the person's
    version is kept in a file they can merge from.
    """
    import asyncio
    import tempfile

    from duragent.errors import DuragentError
    from duragent.stores.base import MemoryConflict

    async with _open(ctx) as workspace:
        name = _agent(workspace, agent)
        store = workspace.stores.memory
        label = "MEMORY.md" if day is None else f"{day.isoformat()}.md"
        before = (
            (await store.read_long_term(name) or None) if day is None else await store.read_day(name, day)
        )
        template = _template(name, day) if before is None else before
        with tempfile.TemporaryDirectory(prefix="duragent-memory-") as folder:
            path = Path(folder) / f"{name}-{label}"
            path.write_text(template, encoding="utf-8")
            await asyncio.to_thread(_run_editor, path)
            after = path.read_text(encoding="utf-8") if path.exists() else template
            if after == template:
                print("No changes.")
                return
            try:
                await store.replace_text(name, day, before, after)
            except MemoryConflict as conflict:
                kept = Path.cwd() / f"{name}-{label}.edited"
                kept.write_text(after, encoding="utf-8")
                raise DuragentError(
                    f"{conflict}: your version is saved in {kept}; run `duragent memory edit` again "
                    "and merge it into the current text"
                ) from None
        print(f"Saved {name}/{label} to the {workspace.config.services.memory.backend} memory store.")


def _commit_edit(workspace: Workspace, paths: list[Path], summary: str | None = None) -> None:
    """Commit the person's change to `paths` and say so."""
    edits = workspace.human_edits
    if edits is None:
        print(f"Saved {', '.join(str(p) for p in paths)} (git is disabled: not committed).")
        return
    from duragent.vcs.repo import RepoBusy, RepoLocked

    relative = [edits.repo.relative(path) for path in paths]
    try:
        result = edits.commit(relative, summary=summary)
    except (RepoBusy, RepoLocked) as error:
        # the change is saved: failing here would have the person run the command again (twice the entry)
        print(
            f"Saved {', '.join(relative)} but not committed yet: {error}; the next `duragent` command "
            "(or the running server) commits it once git can."
        )
        return
    if result.sha:
        print(f"Committed {result.sha[:10]} as {edits.repo.person_identity()}: {', '.join(result.files)}")
        return
    secrets = _secrets_in(workspace, paths)
    if secrets:
        # the commit screen refused it: the data repo must never hold a secret
        print(
            f"Saved {', '.join(relative)} but not committed: it contains a secret ({', '.join(secrets)}); "
            "remove it and the file is committed with its next change."
        )
    else:
        print(f"Saved {', '.join(relative)} (nothing new to commit).")


def _secrets_in(workspace: Workspace, paths: list[Path]) -> list[str]:
    """Names of the secrets the files hold (what the commit screen refuses), each once."""
    found: list[str] = []
    for path in paths:
        if path.is_file():
            found += workspace.guard.find(path.read_bytes().decode("utf-8", errors="replace"))
    return list(dict.fromkeys(found))


@contextlib.contextmanager
def _open_sync(ctx: typer.Context) -> Iterator[Workspace]:
    """A workspace for synchronous commands, closed (stores, committer) on exit."""
    workspace = _open(ctx)
    try:
        yield workspace
    finally:
        run_async(workspace.close())


@app.command("search")
def search(
    ctx: typer.Context,
    query: Annotated[str, typer.Argument(help="Words to look for (case-insensitive).")],
    agent: AgentOption = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Only days from this date (YYYY-MM-DD).")
    ] = None,
    section: Annotated[
        str | None, typer.Option("--section", "-s", help="decision, preference, fact or a heading.")
    ] = None,
    limit: Annotated[int, typer.Option("-n", "--limit", min=1, help="At most this many.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Find remembered entries, best match first (every agent unless --agent)."""
    from duragent.memory.markdown import section_key
    from duragent.memory.search import merge_ranked
    from duragent.stores.base import MemoryQuery

    memory_query = MemoryQuery(
        text=query,
        section=section_key(section) if section else None,
        since=_parse_day(since) if since else None,
        limit=limit,
    )

    async def run() -> list[tuple[str, Any]]:
        async with _open(ctx) as workspace:
            names = [_agent(workspace, agent)] if agent else _all_agents(workspace)
            store = workspace.stores.memory
            return merge_ranked(
                [(name, await store.query(name, memory_query)) for name in names], memory_query
            )

    found = run_async(run())
    if as_json:
        print_json(
            [
                {"agent": name, "date": e.day.isoformat(), "section": e.section, "text": e.text}
                for name, e in found
            ]
        )
        return
    if not found:
        print(f"Nothing remembered matches {query!r}.")
        return
    for name, entry in found:
        print(f"{entry.day.isoformat()}  {name}  [{entry.section}]  {' / '.join(entry.text.splitlines())}")


def _all_agents(workspace: Workspace) -> list[str]:
    """The agents defined, and those whose memory folder is still there (a removed agent's); a
    folder that cannot be an agent's ("old notes", world/, .locks/) is passed over."""
    memory = workspace.config.service_path("memory")
    on_disk = {p.name for p in memory.iterdir() if p.is_dir()} if memory.is_dir() else set()
    defined = set(workspace.agents.names()) if workspace.config.agents_path.is_dir() else set()
    return sorted(name for name in on_disk | defined if _may_be_an_agent(name))


def _may_be_an_agent(name: str) -> bool:
    """Whether `name` is a valid agent name other than `world` (the shared memory's folder)."""
    from duragent.errors import InvalidName
    from duragent.ids import check_name

    try:
        check_name(name, "agent name")
    except InvalidName:
        return False
    return name.casefold() != "world"


@app.command("add")
def add(
    ctx: typer.Context,
    text: Annotated[str, typer.Argument(help="What to remember.")],
    section: Annotated[str, typer.Option("--section", "-s", help="fact, preference or decision.")] = "fact",
    agent: AgentOption = None,
) -> None:
    """Add an entry to today's memory yourself (committed as your edit)."""
    from duragent.errors import UsageError
    from duragent.memory.files import commit_agents_write_first
    from duragent.memory.markdown import section_key, section_plural
    from duragent.stores.base import Change, MemoryEntry
    from duragent.stores.factory import open_memory_store

    key = section_key(section)
    if key not in ("fact", "preference", "decision"):
        raise UsageError(f"invalid section {section!r}: use fact, preference or decision")
    entry = MemoryEntry(text=text, section=key, source="human")
    written: list[Path] = []

    def collect(change: Change) -> None:
        written.extend(change.paths)

    async def put_in_store(workspace: Workspace) -> None:
        store: MemoryStore = open_memory_store(
            workspace.config,
            on_change=collect,
            redact=workspace.guard.redact,
            # (the agent's uncommitted write to the file is committed as the agent's first)
            before_write=lambda path: commit_agents_write_first(workspace, path),
        )
        try:
            await store.put(_agent(workspace, agent), entry)
        finally:
            await store.close()

    with _open_sync(ctx) as workspace:
        run_async(put_in_store(workspace))
        print(f"Added to {section_plural(key)} of {entry.day.isoformat()}.")
        if written:
            _commit_edit(workspace, written, summary=f"{section_plural(key)} +1")


@app.command("export")
def export(
    ctx: typer.Context,
    agent: AgentOption = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """A tar.gz of the memory Markdown (one agent's with --agent, plus world memory): `> memory.tar.gz`."""
    from duragent.errors import UsageError

    if output is None and sys.stdout.isatty():
        raise UsageError(
            "refusing to write a tar.gz to the terminal: redirect it (> memory.tar.gz) or use -o"
        )

    async def run() -> None:
        async with _open(ctx) as workspace:
            name = _agent(workspace, agent) if agent else None
            # a local file or a pipe: writes are small and sequential, fine on the loop
            sink = open(output, "wb") if output else sys.stdout.buffer  # noqa: SIM115, ASYNC230
            try:
                async for chunk in workspace.stores.memory.export(name):
                    sink.write(chunk)
                sink.flush()
            finally:
                if output:
                    sink.close()

    run_async(run())


@app.command("import")
def import_archive(
    ctx: typer.Context,
    archive: Annotated[Path, typer.Argument(help="A tar.gz made by `duragent memory export`.")],
) -> None:
    """Merge an exported archive into memory: new files added, existing ones get what they lack."""
    from duragent.errors import UsageError
    from duragent.memory.files import commit_agents_write_first
    from duragent.memory.importing import import_memory, read_memory_archive

    if not archive.is_file():
        raise UsageError(f"{archive} is not a file")
    files = read_memory_archive(archive)
    with _open_sync(ctx) as workspace:
        if workspace.config.services.memory.backend != "filesystem":
            raise UsageError("memory import writes Markdown files: services.memory must be filesystem")
        # redacted as the memory store redacts what it writes: an archive may hold a key
        files = {relative: workspace.guard.redact(text) for relative, text in files.items()}
        report = import_memory(
            files,
            workspace.config.service_path("memory"),
            # (the agent's uncommitted write to a file is committed as the agent's first)
            before_write=lambda path: commit_agents_write_first(workspace, path),
        )
        print(
            f"Imported {len(files)} file(s): {len(report.created)} new, {len(report.merged)} merged "
            f"(+{report.entries_added} entries), {len(report.unchanged)} unchanged."
        )
        if report.written:
            _commit_edit(workspace, report.written, summary=f"import of {archive.name}")
