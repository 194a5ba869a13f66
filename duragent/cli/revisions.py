"""`duragent show`, `diff`, `revert`, `gc`: what a change did, undoing it, compacting the repository."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from duragent.cli.context import CliState, print_json

if TYPE_CHECKING:
    from duragent.config import DuragentConfig
    from duragent.errors import UsageError
    from duragent.vcs.repo import GitRepo

RawOption = Annotated[bool, typer.Option("--raw", help="git's patch for Markdown files too.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def register(root: typer.Typer) -> None:
    """Add the `show`, `diff`, `revert` and `gc` commands."""
    root.command("show")(show)
    root.command("diff")(diff)
    root.command("revert")(revert)
    root.command("gc")(gc)


def _repo(ctx: typer.Context) -> tuple[DuragentConfig, GitRepo]:
    from duragent.errors import UsageError
    from duragent.vcs.repo import GitRepo

    state: CliState = ctx.obj
    config = state.config()
    if not config.git.enabled:
        raise UsageError(
            f"{config.data_path} keeps no history: git.enabled is false in duragent.yaml; "
            "remove that line (or set it to true) to have one"
        )
    if not GitRepo.is_repo(config.data_path):
        raise not_a_repository(config)
    return config, GitRepo.open_or_init(config.data_path, create=False)


def not_a_repository(config: DuragentConfig) -> UsageError:
    """The error for a data directory that is not (yet) a git repository, saying what makes it one."""
    from duragent.errors import UsageError

    if not config.data_path.exists():
        return UsageError(
            f"{config.data_path} does not exist: check --data-dir, or data_dir in duragent.yaml"
        )
    return UsageError(
        f"{config.data_path} is not a git repository yet (a workspace made with `init --no-git`?): "
        "`duragent init` in the workspace (adding only what is missing) or the next "
        "`duragent serve` makes it one"
    )


def _relative_folder(repo: GitRepo, folder: Path) -> list[str]:
    try:
        return [repo.relative(folder)]
    except ValueError:
        return []


def show(
    ctx: typer.Context,
    rev: Annotated[str, typer.Argument(help="A commit: sha, HEAD, HEAD~2 ...")] = "HEAD",
    raw: RawOption = False,
    as_json: JsonOption = False,
) -> None:
    """One change of the data directory: who, when, why, and memory changes by section."""
    from duragent.vcs.revisions import render_diff, show_revision

    _, repo = _repo(ctx)
    revision = show_revision(repo, rev, raw=raw)
    if as_json:
        print_json(revision.to_json())
        return
    when = revision.when.astimezone().strftime("%Y-%m-%d %H:%M")
    print(f"commit {revision.sha}\nauthor {revision.author}\ndate   {when}\n")
    print("\n".join(f"    {line}" for line in revision.message.rstrip().splitlines()))
    if revision.diffs:
        print()
        print(render_diff(revision.diffs))


def diff(
    ctx: typer.Context,
    args: Annotated[
        list[str] | None,
        typer.Argument(help="[REV [REV]] [-- PATH...]: two commits, one commit vs now, or HEAD vs now."),
    ] = None,
    raw: RawOption = False,
    as_json: JsonOption = False,
) -> None:
    """What changed between revisions (default: uncommitted changes), memory as bullets per section."""
    from duragent.vcs.revisions import diff_revisions, render_diff

    _, repo = _repo(ctx)
    revs, paths = _split_revs_and_paths(repo, args or [])
    if repo.head() is None:
        old, new = None, None
    elif not revs:
        old, new = "HEAD", None
    elif len(revs) == 1:
        old, new = revs[0], None
    else:
        old, new = revs[0], revs[1]
    diffs = diff_revisions(repo, old, new, paths, raw=raw)
    if as_json:
        print_json([d.to_json() for d in diffs])
        return
    print(render_diff(diffs) if diffs else "No changes.")


def _split_revs_and_paths(repo: GitRepo, args: list[str]) -> tuple[list[str], list[str]]:
    """Leading arguments that name commits (at most two) are revisions, the rest paths, like git."""
    from duragent.errors import UsageError
    from duragent.vcs.repo import UnknownRevision

    revs: list[str] = []
    rest = list(args)
    while rest and len(revs) < 2 and not (repo.root / rest[0]).exists():
        try:
            repo.resolve(rest[0])
        except UnknownRevision:
            if "/" not in rest[0]:
                raise
            break
        revs.append(rest.pop(0))
    for path in rest:
        if path.startswith("-"):
            raise UsageError(f"unexpected option {path!r} among paths")
    return revs, rest


def revert(
    ctx: typer.Context,
    rev: Annotated[str, typer.Argument(help="The commit to undo.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Undo a memory or agent-definition change with a new commit (session logs are never rewritten)."""
    from duragent.vcs.revisions import check_revertible, revert_revision, show_subject
    from duragent.workspace import Workspace

    config, repo = _repo(ctx)
    revertible = [
        *_relative_folder(repo, config.service_path("memory")),
        *_relative_folder(repo, config.agents_path),
    ]
    append_only = _relative_folder(repo, config.service_path("session"))
    plan = check_revertible(repo, rev, revertible=revertible, append_only=append_only)
    if not yes:
        print(f"Revert {repo.resolve(rev)[:10]} {show_subject(repo, rev)!r}, touching:")
        effects = _revert_effects(repo, rev)
        print("\n".join(f"  {file}{effects.get(file, '')}" for file in plan.files))
        if plan.kept:
            print("and leaving as they are (only memory and agent definitions are reverted):")
            print("\n".join(f"  {file}" for file in plan.kept))
        if not sys.stdin.isatty():
            # (as `session delete`: a script gets a reason, not a question nobody reads and "Aborted!")
            from duragent.errors import UsageError

            raise UsageError("refusing to revert without confirmation: pass --yes")
        typer.confirm("Continue?", abort=True)
    # edits made while nothing ran are committed first, so the revert commit holds only the revert
    workspace = Workspace(config)
    workspace.commit_offline_edits()
    memory_root = config.service_path("memory") if config.services.memory.backend == "filesystem" else None
    edits = workspace.human_edits
    result = revert_revision(
        repo,
        rev,
        revertible=revertible,
        append_only=append_only,
        memory_root=memory_root,
        guard=workspace.guard,
        # what a running server's agent wrote to these files and has not committed yet is
        # committed as the agent's first: the revert commit must not carry its lines in
        before_write=edits.commit_agent_write if edits is not None else None,
    )
    if result.sha is None:
        print("Nothing to do: the files are already as they were before that commit.")
        return
    print(f"Reverted {result.reverted[:10]} in {result.sha[:10]}: {', '.join(result.files)}")
    if result.kept:
        print(f"Left as they are (only memory and agent definitions are reverted): {', '.join(result.kept)}")


def _revert_effects(repo: GitRepo, rev: str) -> dict[str, str]:
    """What reverting `rev` does to the files it created or deleted: a revert deletes the first
    (an agent's definition, its MEMORY.md) and brings back the second; worth saying before asking."""
    effects = {"A": " (deleted: that commit created it)", "D": " (restored: that commit deleted it)"}
    return {path: effects[status] for status, path in repo.commit_files(rev) if status in effects}


def gc(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Compact the data repository (`git gc`) and report its size before and after."""
    from duragent.vcs.revisions import gc_repository

    _, repo = _repo(ctx)
    report = gc_repository(repo)
    if as_json:
        print_json(report.to_json())
        return
    print(f".git before gc   {_size(report.git_before)}")
    print(f".git after gc    {_size(report.git_after)}")
    print(f"tracked files    {_size(report.tracked)}")
    print(f"ratio            {report.ratio:.2f}x")


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"
