"""Workspace: the data directory opened for work — configuration, git, stores and agents.

The composition root of the library: commands and the server open one Workspace and reach
every resource through it, so each resource has exactly one owner and one place it is closed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from duragent.config import DuragentConfig
from duragent.errors import DuragentError, NotFound
from duragent.stores.base import Change

if TYPE_CHECKING:
    from duragent.agents.catalog import AgentCatalog
    from duragent.secrets import SecretGuard
    from duragent.stores.factory import Stores
    from duragent.vcs.committer import Committer
    from duragent.vcs.repo import GitRepo
    from duragent.vcs.watch import AgentWriteLedger, HumanEditCommitter

log = logging.getLogger(__name__)

#: The largest held-back file `files_held_back` reads again to see whether it still holds a
#: secret (a larger one is taken to hold it still: /readyz must stay cheap).
_SCREENED_AT_MOST = 1 << 20

#: Change kinds that write files a person may also edit (recorded so the two are told apart).
_EDITABLE_KINDS = frozenset({"memory", "agent"})


def store_folders(config: DuragentConfig) -> dict[Path, str]:
    """The folders only Duragent's stores write, with the change kind of their files."""
    from duragent.scheduling.store import schedules_folder

    folders = {config.dynamic_agents_path: "agent"}
    if config.services.session.backend == "filesystem":
        folders[config.service_path("session")] = "session"
        # (a person's hand edits there too: committed at the next start, as the scheduler's)
        folders[schedules_folder(config)] = "schedule"
    if config.services.artifacts.backend == "filesystem":
        folders[config.service_path("artifacts")] = "artifact"
    return folders


class WorkspaceNotFound(NotFound):
    """The data directory does not exist yet."""


class Workspace:
    """Configuration plus lazily opened stores, committer and agent catalog; close it when done."""

    def __init__(self, config: DuragentConfig, *, env: Mapping[str, str] | None = None, require: bool = True):
        self.config = config
        self.env: Mapping[str, str] = os.environ if env is None else env
        if require and not config.data_path.is_dir():
            raise WorkspaceNotFound(
                f"no Duragent workspace at {config.data_path}: run `duragent init` there first "
                "(or pass --config / --data-dir)"
            )
        self._stores: Stores | None = None
        # files this workspace's stores wrote: its committer commits them, not the offline sweep
        self._written_here: set[str] = set()
        #: Tool calls running now (the committer and the human-edit watcher wait for them).
        self.tool_calls_running = 0
        #: True while a `HumanEditWatcher` watches the editable folders: it committed the edits
        #: made while nothing ran when it started, and commits every later one itself.
        self.human_edits_watched = False
        #: A person's edits left out of commits for a secret (repo-relative path: its names).
        self._held_back_edits: dict[str, tuple[str, ...]] = {}
        #: Whether a held-back file still adds a secret to HEAD, by its stat and HEAD.
        self._held_back_verdicts: dict[tuple[str, int, int, int, int, str | None], bool] = {}

    def note_tool_activity(self, delta: int) -> None:
        """The runtime's `tool_activity` hook: +1 when tool calls start, -1 when they end."""
        self.tool_calls_running = max(0, self.tool_calls_running + delta)

    @property
    def data_path(self) -> os.PathLike[str]:
        """The data directory."""
        return self.config.data_path

    @cached_property
    def guard(self) -> SecretGuard:
        """Redacts secret values before anything reaches disk."""
        from duragent.secrets import SecretGuard

        return SecretGuard.from_config(self.config, self.env)

    @cached_property
    def committer(self) -> Committer | None:
        """The background git committer, started on first use; None when `git.enabled` is false."""
        repo = self.repo
        if repo is None:
            return None
        from duragent.vcs.committer import Committer

        # a person's edits made while nothing ran go in first, under their name (a watcher
        # already running did that, one `git status` ago); a repository that cannot take a commit
        # now (a rebase in progress) must not stop the agent's work (nor must a file it cannot
        # read: a folder replaced by a file, one it may not open)
        if not self.human_edits_watched:
            try:
                self.commit_offline_edits()
            except (DuragentError, OSError) as error:
                log.warning("could not commit edits made while Duragent was not running: %s", error)
        committer = Committer(
            repo,
            debounce=self.config.git.commit_debounce.total_seconds(),
            max_delay=self.config.git.max_commit_delay.total_seconds(),
            author=self.config.git.author,
            guard=self.guard,
            # (what an unapproved tool call changed in git's configuration is put back at its end)
            held=lambda: self.tool_calls_running > 0,
        )
        # then what a process killed before its commit left in the stores' own folders
        try:
            committer.queue_uncommitted(store_folders(self.config), skip=self._written_here)
        except (DuragentError, OSError) as error:
            log.warning("could not look for changes an earlier run left uncommitted: %s", error)
        committer.start()
        return committer

    @cached_property
    def repo(self) -> GitRepo | None:
        """The data directory's git repository (created if missing); None when `git.enabled` is false."""
        if not self.config.git.enabled:
            return None
        from duragent.vcs.repo import GitRepo

        return GitRepo.open_or_init(self.config.data_path)

    @cached_property
    def agent_writes(self) -> AgentWriteLedger | None:
        """Content hashes of the memory and agent files Duragent wrote (tells them from a person's edits)."""
        repo = self.repo
        if repo is None:
            return None
        from duragent.vcs.watch import AgentWriteLedger

        return AgentWriteLedger(repo)

    @property
    def editable_paths(self) -> list[Path]:
        """Folders a person edits by hand and whose edits are committed as theirs: memory and agents."""
        paths = [self.config.agents_path]
        if self.config.services.memory.backend == "filesystem":
            paths.insert(0, self.config.service_path("memory"))
        return paths

    @property
    def shared_paths(self) -> list[Path]:
        """Workspace-wide folders a person edits (skills, tool folders), committed as their edits."""
        return [self.config.data_path / "skills", self.config.data_path / "tools"]

    @cached_property
    def human_edits(self) -> HumanEditCommitter | None:
        """Commits a person's edits of memory and agent files apart from the agent's; None without git."""
        repo, ledger = self.repo, self.agent_writes
        if repo is None or ledger is None:
            return None
        from duragent.secrets import in_the_clear
        from duragent.vcs.watch import HumanEditCommitter

        guard = self.guard

        held_back = self._held_back_edits

        def screen(path: str, added: str) -> bool:
            found = guard.find_in_path(path) + guard.find(added) + in_the_clear(path, added)
            if found:
                log.error("not committing %s: it contains a secret (%s)", path, ", ".join(found))
                held_back[path] = tuple(dict.fromkeys(found))
            else:
                held_back.pop(path, None)
            return not found

        memory = self.config.services.memory.backend == "filesystem"
        return HumanEditCommitter(
            repo,
            self.editable_paths,
            ledger=ledger,
            agent_author=self.config.git.author,
            screen=screen,
            shared_roots=self.shared_paths,
            memory_root=self.config.service_path("memory") if memory else None,
            agent_pending=self.uncommitted_writes,
        )

    def revert_scope(self) -> tuple[list[str], list[str]]:
        """Repo-relative folders whose commits may be reverted (memory, agents) and the append-only ones."""
        repo = self.repo
        if repo is None:
            return [], []

        def relative(folder: Path) -> list[str]:
            try:
                return [repo.relative(folder)]
            except ValueError:
                return []

        revertible = [*relative(self.config.service_path("memory")), *relative(self.config.agents_path)]
        return revertible, relative(self.config.service_path("session"))

    def commit_offline_edits(self) -> str | None:
        """Commit edits a person made to memory/agent files while no Duragent process ran; the sha or None."""
        if not self.config.data_path.is_dir():
            return None
        edits = self.human_edits
        if edits is None:
            return None
        # Files a running server's agents wrote are its committer's to commit, within its
        # debounce: "recovered" here, they would be committed twice, the second time undoing
        # whatever this command commits meanwhile.
        recover = not self._server_elsewhere()
        return edits.commit_pending(exclude=self._written_here, recover_agent_files=recover).sha

    def _server_elsewhere(self) -> bool:
        """True when another process serves this workspace now (its run file names a live pid)."""
        from duragent.client.runfile import read_run_info

        running = read_run_info(self.config.data_path)
        return running is not None and running.pid != os.getpid()

    def uncommitted_writes(self) -> set[str]:
        """Repo-relative files the stores changed that the committer has not committed yet.

        Empty when no committer was started (asking must not start one: starting commits edits).
        """
        committer: Committer | None = self.__dict__.get("committer")  # the cached_property's value
        return committer.pending_files() if committer is not None else set()

    def commits_failing(self) -> str | None:
        """Why git commits fail now, since when and what to do; None while they succeed (or no
        committer runs: asking must not start one)."""
        committer: Committer | None = self.__dict__.get("committer")
        if committer is None or committer.last_error is None:
            return None
        from datetime import UTC, datetime

        since = committer.failing_since
        when = (
            datetime.fromtimestamp(since, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
            if since is not None
            else "now"
        )
        # (a count kept as changes come, not the files: a probe must not walk a backlog that
        # grows with every turn while commits fail)
        waiting = committer.pending
        return (
            f"commits failing since {when}, {waiting} change{'s' if waiting != 1 else ''} waiting: "
            f"{committer.last_error}; put that right (`git -C {self.config.data_path} status` "
            "shows the repository): the next retry commits them, without a restart"
        )

    def files_held_back(self) -> list[str]:
        """A line for each file left out of commits because it holds a secret (by the committer
        of the stores' changes, or of a person's edits; asking starts neither). Blocking (git
        runs when a listed file changed): call it in a thread."""
        committer: Committer | None = self.__dict__.get("committer")
        kept = [self._held_back_edits] + ([committer.held_back] if committer is not None else [])
        # (copies: the committers' threads write these; what no longer holds is left out here,
        # not taken out of them)
        held_back = {path: names for held in kept for path, names in list(held.items())}
        # (one verdict kept per file still listed: those of earlier versions, or of files no
        # longer held back, go)
        self._held_back_verdicts = {
            key: verdict for key, verdict in list(self._held_back_verdicts.items()) if key[0] in held_back
        }
        return [
            f"{self.guard.redact(path)} is not committed: it holds a secret ({', '.join(names)}); "
            "remove it from the file and the file is committed with its next change"
            for path, names in sorted(held_back.items())
            if self._still_held_back(path)
        ]

    def _still_held_back(self, path: str) -> bool:
        """Whether the data directory's file `path` (repo-relative) still adds a secret to its
        committed version, screened as the committers screen it. Blocking (git runs): call it
        in a thread. Once known, one `lstat` and a read of HEAD's ref a call: the file is
        screened again only when it or HEAD changed, and never read when it is not a regular
        file or is larger than `_SCREENED_AT_MOST` (then it is taken to hold one still)."""
        repo = self.repo
        if repo is None:
            return False
        try:
            status = (repo.root / path).lstat()
        except OSError:
            return False  # gone: nothing left to commit
        head = repo.head_from_refs()
        key = (path, status.st_ino, status.st_mtime_ns, status.st_ctime_ns, status.st_size, head)
        known = self._held_back_verdicts.get(key)
        if known is not None:
            return known
        screened = stat.S_ISREG(status.st_mode) and status.st_size <= _SCREENED_AT_MOST
        if not screened or self.guard.find_in_path(path):
            verdict = True
        else:
            from duragent.secrets import in_the_clear

            try:
                added = repo.added_since(head, path)
            except (OSError, DuragentError):
                return True  # (unreadable now: said as held, and looked at again next time)
            verdict = bool(self.guard.find(added) or in_the_clear(path, added))
        self._held_back_verdicts[key] = verdict
        return verdict

    def record_change(self, change: Change) -> None:
        """The ChangeListener every store reports to: notes agent-written files, hands the change to git."""
        ledger = self.agent_writes
        if ledger is not None and change.kind in _EDITABLE_KINDS:
            self._written_here.update(ledger.record(change.paths, change.content))
        elif "committer" not in self.__dict__ and (repo := self.repo) is not None:
            # The first change starts the committer, whose sweep for files a crash left
            # uncommitted must not take this one (a command's first write) for such a file.
            for path in change.paths:
                with contextlib.suppress(ValueError):
                    self._written_here.add(repo.relative(path))
        committer = self.committer
        if committer is not None:
            committer.notify(change)

    @property
    def stores(self) -> Stores:
        """The session, memory and artifact stores `services.*` selects."""
        if self._stores is None:
            from duragent.stores.factory import (
                Stores,
                open_artifact_store,
                open_memory_store,
                open_session_store,
            )

            self._stores = Stores(
                sessions=open_session_store(
                    self.config, on_change=self.record_change, redact=self.guard.redact_value
                ),
                memory=open_memory_store(self.config, on_change=self.record_change, redact=self.guard.redact),
                artifacts=open_artifact_store(self.config, on_change=self.record_change),
            )
        return self._stores

    @cached_property
    def agents(self) -> AgentCatalog:
        """The agents defined under `agents.static.path`."""
        from duragent.agents.catalog import AgentCatalog

        return AgentCatalog(self.config.agents_path, env=self.env)

    async def close(self) -> None:
        """Close the stores and commit everything still pending."""
        try:
            if self._stores is not None:
                await self._stores.close()
                self._stores = None
        finally:
            # (a store that fails to close must not leave the committer's worker running)
            if "committer" in self.__dict__ and self.committer is not None:
                self.committer.close()

    async def __aenter__(self) -> Workspace:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
