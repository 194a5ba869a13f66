"""AgentRegistry: the agents a running server uses — static and deployed, cached, kept current.

Two folders hold agents: the static one (`agents.static.path`, edited by people) and the
dynamic one (`agents.dynamic.path`, written by the admin API through `deploy`/`remove`). A
name in both is the static agent; the shadowed deployment is reported by `errors()`.

Loaded specs are kept in an LRU cache of `agents.cache_size` entries. With `agents.lazy_load`
only names are discovered at start and a spec is read on first `get`; an evicted spec is read
again on its next use. With `agents.static.watch` a watchdog observer reloads an edited agent
(debounced); an edit that breaks it keeps the previous version in use and records the error.
An agent folder that is a symlink is watched where it points, and a static folder created or
replaced while watching (a restored backup) is watched anew.

The registry is used from the event loop (`get`) and from worker threads (`deploy`, `reload`
through `asyncio.to_thread`), so its maps are guarded by one lock; files are read outside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import shutil
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Literal

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirModifiedEvent,
    DirMovedEvent,
    EventsLostEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)

from duragent.agents.catalog import AgentNotFound, InvalidAgent
from duragent.agents.loader import (
    AGENT_FILENAME,
    Agent,
    discover_agents,
    display_path,
    load_agent,
    validate_agent_folder,
)
from duragent.agents.spec import check_new_agent_name
from duragent.config import DuragentConfig
from duragent.errors import ConfigError, Location, Problem, UsageError
from duragent.ids import check_name, ulid
from duragent.stores.base import Change, ChangeListener, ignore_changes

if TYPE_CHECKING:
    from watchdog.observers.api import BaseObserver, ObservedWatch

    from duragent.secrets import SecretGuard

log = logging.getLogger(__name__)

AgentSource = Literal["static", "dynamic"]

#: Quiet time after the last file event before an edited agent is reloaded (editors write in bursts).
WATCH_DEBOUNCE_SECONDS = 0.3
#: How long a turn waits for its agent's reload before going on with the definition it has.
SETTLE_WITHIN_SECONDS = 2.0
#: Folders `deploy` works in, inside the dynamic folder; hidden, so never taken for agents.
_STAGING_PREFIX = ".staging-"
#: Watchdog events that say a file changed; opened/closed-without-write events are our own reads.
_CHANGE_EVENTS = frozenset({"created", "modified", "moved", "deleted", "closed"})
#: The debounce key of a change to the static folder itself (replaced, removed, created): no agent
#: is named "".
_WHOLE_FOLDER = ""


@dataclass(frozen=True)
class AgentSummary:
    """One row of the agent list: what an agent is, where it comes from, and whether it loads."""

    name: str
    description: str
    version: str | None
    provider: str | None
    model: str | None
    source: AgentSource
    valid: bool
    #: The agent's current problems (`file:line:col: message`, one per line), or None.
    error: str | None = None


@dataclass(frozen=True)
class RegistryStats:
    """Cache counters since start: lookups served from the cache, lookups that read files, evictions."""

    hits: int
    misses: int
    evictions: int
    loaded: int


class StaticAgentConflict(UsageError):
    """A deploy or remove aimed at an agent defined in the static folder, which the API never changes."""

    def __init__(self, name: str, directory: Path, action: str):
        self.name = name
        self.directory = directory
        super().__init__(
            f"agent '{name}' is a static agent defined in {display_path(directory)}; "
            f"{action} by editing or deleting that folder (the admin API only manages deployed agents)"
        )


class AgentExists(UsageError):
    """A create-only deploy (POST) of a name that a deployed agent already has."""

    def __init__(self, name: str):
        self.name = name
        super().__init__(f"agent '{name}' already exists; replace it with PUT /api/admin/v1/agents/{name}")


@dataclass(frozen=True)
class _Entry:
    """Where an agent's files are."""

    name: str
    directory: Path
    source: AgentSource


class AgentRegistry:
    """Every agent of a server: lookup by name with an LRU cache, deploy/remove, reload, watch."""

    def __init__(
        self,
        config: DuragentConfig,
        *,
        env: Mapping[str, str] | None = None,
        on_change: ChangeListener = ignore_changes,
        guard: SecretGuard | None = None,
    ):
        self.static_path = config.agents_path
        self._shared_web_search = config.web_search is not None
        self.dynamic_path = config.dynamic_agents_path
        self.lazy = config.agents.lazy_load
        self.cache_size = config.agents.cache_size
        self.watch_enabled = config.agents.static.watch
        self._env = env
        self._on_change = on_change
        self._guard = guard
        self._lock = threading.RLock()
        # One deploy or remove at a time: "does it exist" and the folder swap are one step.
        self._deploying = threading.Lock()
        self._known: dict[str, _Entry] = {}
        self._shadowed: dict[str, Path] = {}
        self._cache: OrderedDict[str, Agent] = OrderedDict()
        self._errors: dict[str, list[str]] = {}
        self._warnings: dict[str, list[str]] = {}
        self._hits = self._misses = self._evictions = 0
        self._observer: BaseObserver | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._refreshes: set[asyncio.Task[bool]] = set()
        #: The newest reload of each agent (or of the folder, under `_WHOLE_FOLDER`) still running.
        self._refreshing: dict[str, asyncio.Task[bool]] = {}
        self._folder_handler = _StaticFolderHandler(self.static_path, self._notify_threadsafe)
        # The recursive watch of the static folder; swapped for a new one when the folder is replaced.
        self._folder_watch: ObservedWatch | None = None
        # Watches of agent folders that are symlinks (the folder's watch does not follow them), by
        # agent name, with the folder each one watches.
        self._linked_watches: dict[str, tuple[Path, ObservedWatch]] = {}
        self._rewatching = threading.Lock()
        self._remove_leftover_staging()
        if self.lazy:
            self._rediscover()
        else:
            self.reload()

    # --- lookup ---------------------------------------------------------------------------------

    def get(self, name: str) -> Agent:
        """Agent `name`; raises AgentNotFound (listing known names) or InvalidAgent (with every problem)."""
        check_name(name, "agent name")
        with self._lock:
            cached = self._cache.get(name)
            if cached is not None:
                self._cache.move_to_end(name)
                self._hits += 1
                return cached
            self._misses += 1
            entry = self._known.get(name)
        # An agent folder created after the last scan (`agent create`, a copy) is found here.
        entry = entry or self._find_on_disk(name)
        if entry is None:
            raise AgentNotFound(name, self.names(), self.static_path)
        agent = self._load(entry)
        with self._lock:
            self._known[name] = entry
            self._remember(agent)
        return agent

    def cached(self, name: str) -> Agent | None:
        """The newest definition of agent `name` loaded so far, if any (no file is read)."""
        with self._lock:
            return self._cache.get(name)

    async def settled(self, name: str) -> Agent | None:
        """`cached(name)` once the edits the watcher has seen are read: a change to the agent's
        files (or to the agents folder) still in its quiet time is reloaded now, and reloads under
        way are waited for. A message sent right after a save (`sed -i ... && duragent send`)
        meets the edited agent; the quiet time only spares reloads while nobody asks."""
        waiting = set()
        for key in (_WHOLE_FOLDER, name):
            timer = self._timers.get(key)
            if timer is not None:
                timer.cancel()
                self._start_refresh(key)
            refreshing = self._refreshing.get(key)
            if refreshing is not None:
                waiting.add(refreshing)
        if waiting:
            # (wait, not gather: a turn cancelled meanwhile must not cancel the reloads; a reload
            # stuck on a hung mount leaves the turn its last definition, not stuck with it)
            await asyncio.wait(waiting, timeout=SETTLE_WITHIN_SECONDS)
        return self.cached(name)

    def loaded(self) -> list[Agent]:
        """The agents loaded right now (every valid one unless `agents.lazy_load`)."""
        with self._lock:
            return list(self._cache.values())

    def names(self) -> list[str]:
        """Names of every known agent, sorted."""
        with self._lock:
            return sorted(self._known)

    def source(self, name: str) -> AgentSource:
        """Whether agent `name` is static or deployed; AgentNotFound when there is no such agent."""
        return self._entry(name).source

    def summaries(self) -> list[AgentSummary]:
        """Every known agent, sorted by name; agents not in the cache are read without caching them."""
        with self._lock:
            entries = [self._known[name] for name in sorted(self._known)]
        return [self._summarise(entry) for entry in entries]

    def summary(self, name: str) -> AgentSummary:
        """The summary of one agent; AgentNotFound when there is no such agent."""
        return self._summarise(self._entry(name))

    def errors(self) -> list[str]:
        """`file:line:col: message` for each problem of a broken agent file, plus shadowed deployments."""
        with self._lock:
            lines = [line for name in sorted(self._errors) for line in self._errors[name]]
            for name, directory in sorted(self._shadowed.items()):
                lines.append(
                    f"{display_path(directory / AGENT_FILENAME)}: warning: deployed agent '{name}' is "
                    f"hidden by the static agent in {display_path(self.static_path / name)} "
                    "(static agents win)"
                )
        return lines

    def problems_by_agent(self) -> dict[str, list[str]]:
        """Each broken agent's problems (`file:line:col: message`), by agent name."""
        with self._lock:
            return {name: list(lines) for name, lines in sorted(self._errors.items())}

    def warnings_by_agent(self) -> dict[str, list[str]]:
        """Each answering agent's load warnings (`file:line:col: unknown key ...`), by agent name."""
        with self._lock:
            return {name: list(lines) for name, lines in sorted(self._warnings.items())}

    @property
    def stats(self) -> RegistryStats:
        """Cache counters for /metrics."""
        with self._lock:
            return RegistryStats(self._hits, self._misses, self._evictions, len(self._cache))

    def files(self, name: str) -> dict[str, str]:
        """The text files of agent `name`'s folder by relative POSIX path (binary files are left out)."""
        directory = self._entry(name).directory
        contents: dict[str, str] = {}
        for file in sorted(directory.rglob("*")):
            if not file.is_file():
                continue
            try:
                contents[file.relative_to(directory).as_posix()] = file.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                log.debug("files(%s): leaving out binary file %s", name, file)
        return contents

    # --- reloading ------------------------------------------------------------------------------

    def reload(self) -> int:
        """Rescan both folders and re-read every agent; return how many are valid.

        A broken agent keeps its previously loaded version (if any) and its problems go to
        `errors()`. With lazy loading, only agents already in the cache stay cached.
        """
        entries = self._rediscover()
        valid = 0
        for entry in entries:
            try:
                agent = self._load(entry)
            except ConfigError:
                continue
            valid += 1
            with self._lock:
                if not self.lazy or entry.name in self._cache:
                    self._remember(agent)
        return valid

    def reload_agent(self, name: str) -> bool:
        """Re-read one agent after its files changed; True when it loads.

        A broken edit keeps the previously loaded version in use and records its problems.
        """
        entry = self._find_on_disk(name)
        with self._lock:
            self._shadowed.pop(name, None)
            if entry is not None and entry.source == "static" and self._dynamic_folder_has(name):
                self._shadowed[name] = self.dynamic_path / name
            if entry is None:
                self._forget(name)
                log.info("agent '%s' removed: its folder is gone", name)
                self._watch_where_linked(name)
                return False
            self._known[name] = entry
        self._watch_where_linked(name)
        try:
            agent = self._load(entry)
        except ConfigError:
            return False
        with self._lock:
            if not self.lazy or name in self._cache:
                self._remember(agent)
        log.info("agent '%s' reloaded from %s", name, display_path(entry.directory))
        return True

    # --- deploying ------------------------------------------------------------------------------

    def deploy(self, name: str, files: Mapping[str, str], *, replace: bool = True) -> Agent:
        """Validate `files` as agent `name`'s folder, then replace the deployed folder with them.

        Nothing is written when the files are invalid: ConfigError lists every problem, each
        located in the file it is about (`agent.yaml:3:5`). With `replace=False` an agent
        deployed meanwhile is AgentExists, even one a concurrent call deployed. Reports a
        "deployed" Change.
        """
        check_new_agent_name(name)
        self._refuse_static(name, "change it")
        _check_files(files)
        _refuse_secrets(files, self._guard)
        self.dynamic_path.mkdir(parents=True, exist_ok=True)
        staging = self.dynamic_path / f"{_STAGING_PREFIX}{ulid()}"
        staged = staging / name
        target = self.dynamic_path / name
        try:
            _write_files(staged, files)
            # as `duragent agent validate` checks it: agent.yaml, prompts, policy, skills, tools
            problems, warnings = validate_agent_folder(
                staged, self._env, shared_web_search=self._shared_web_search
            )
            if problems:
                raise ConfigError(_relocated(problems, staged, target))
            for warning in _relocated(warnings, staged, target):
                log.warning("deploying agent '%s': %s", name, warning)
            with self._deploying:
                agent = self._swap_in(name, staged, staging / ".previous", replace=replace)
                # The folder stages deletions of files the new version dropped; the files are listed
                # too so listeners that track written content (the human-edit ledger) see each one.
                written = tuple(target / relative for relative in sorted(files))
                self._on_change(Change((target, *written), "agent", name, "deployed"))
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        log.info("agent '%s' deployed to %s", name, display_path(target))
        return agent

    def _swap_in(self, name: str, staged: Path, previous: Path, *, replace: bool) -> Agent:
        """Make the checked folder `staged` agent `name`'s deployed folder and serve it (deploy lock held)."""
        target = self.dynamic_path / name
        self._refuse_static(name, "change it")
        if not replace and self._dynamic_folder_has(name):
            raise AgentExists(name)
        with self._lock:
            if target.exists():
                # A directory cannot be renamed over a non-empty one: move the old one aside first.
                os.replace(target, previous)
            os.replace(staged, target)
        agent, warnings = load_agent(target, self._env)
        with self._lock:
            self._known[name] = _Entry(name, target, "dynamic")
            self._errors.pop(name, None)
            self._remember(agent)
        self._note_warnings(name, [str(warning) for warning in warnings])
        return agent

    def _refuse_static(self, name: str, action: str) -> None:
        static = self.static_path / name
        if (static / AGENT_FILENAME).is_file():
            raise StaticAgentConflict(name, static, action)

    def remove(self, name: str) -> None:
        """Delete deployed agent `name`; reports a "removed" Change. Static agents: StaticAgentConflict.

        A deployment hidden by a static agent of the same name is removed too; the static one stays.
        """
        check_new_agent_name(name)
        target = self.dynamic_path / name
        trash = self.dynamic_path / f"{_STAGING_PREFIX}{ulid()}"
        with self._deploying:
            if not self._dynamic_folder_has(name):
                self._refuse_static(name, "remove it")
                raise AgentNotFound(name, self.names(), self.static_path)
            static = self.static_path / name
            with self._lock:
                os.replace(target, trash)
                self._forget(name)
                if (static / AGENT_FILENAME).is_file():
                    self._known[name] = _Entry(name, static, "static")
            self._on_change(Change((target,), "agent", name, "removed"))
        shutil.rmtree(trash, ignore_errors=True)
        log.info("agent '%s' removed from %s", name, display_path(self.dynamic_path))

    # --- watching -------------------------------------------------------------------------------

    async def start_watching(self) -> None:
        """Watch the static folder when `agents.static.watch` is on (a no-op otherwise).

        Its parent folder is watched too (not recursively), so a static folder created after the
        start, or replaced by another (a backup restored, a deploy script's swap), is watched anew.
        """
        if not self.watch_enabled or self._observer is not None:
            return
        parent = self.static_path.absolute().parent
        if not parent.is_dir():
            log.warning("not watching agents: %s does not exist", display_path(parent))
            return
        from watchdog.observers import Observer
        from watchdog.observers.polling import PollingObserver

        self._loop = asyncio.get_running_loop()
        try:
            observer = await asyncio.to_thread(self._observe, Observer())
        except OSError as exc:
            # Out of inotify instances or watches (many servers on one machine): watching is on by
            # default, so it must never stop the server from starting. Polling sees the same edits.
            log.warning("watching agents by polling every second (%s)", exc)
            observer = await asyncio.to_thread(self._observe, PollingObserver(timeout=1.0))
        self._observer = observer
        if self._folder_watch is None:
            log.info("%s does not exist yet: agents are watched once it does", display_path(self.static_path))
        else:
            log.info("watching %s for agent edits", display_path(self.static_path))

    def _observe(self, observer: BaseObserver) -> BaseObserver:
        """Schedule the watches on `observer` and start it (in a worker thread); stopped on OSError."""
        parent = self.static_path.absolute().parent
        try:
            observer.schedule(
                _FolderReplacedHandler(self.static_path, self._notify_threadsafe),
                str(parent),
                recursive=False,
                event_filter=_entry_events(),
            )
            self._folder_watch = None
            if self.static_path.is_dir():
                self._folder_watch = observer.schedule(
                    self._folder_handler, str(self.static_path), recursive=True, event_filter=_change_events()
                )
            observer.daemon = True
            observer.start()
            self._observer = observer
            for name in self.names():
                self._watch_where_linked(name)
        except OSError:
            self._observer = None
            with contextlib.suppress(RuntimeError, OSError):
                observer.stop()
            raise
        return observer

    def _rewatch(self) -> bool:
        """Watch the static folder anew after it was replaced, removed or created, and read every
        agent again (the folder may hold other agents now); True when the folder is watched."""
        observer = self._observer
        if observer is None:
            return False
        with self._rewatching:
            if self._folder_watch is not None:
                # The old watch follows the old folder (moved away) or stopped with it (deleted).
                with contextlib.suppress(KeyError, OSError, RuntimeError):
                    observer.unschedule(self._folder_watch)
                self._folder_watch = None
            if self.static_path.is_dir():
                try:
                    self._folder_watch = observer.schedule(
                        self._folder_handler,
                        str(self.static_path),
                        recursive=True,
                        event_filter=_change_events(),
                    )
                except OSError as exc:
                    log.warning(
                        "cannot watch %s again (%s): reload edited agents with reload-agents",
                        display_path(self.static_path),
                        exc,
                    )
        self.reload()
        for name in {*self.names(), *self._linked_watches}:
            self._watch_where_linked(name)
        log.info("%s was created, removed or replaced: agents read again", display_path(self.static_path))
        return self._folder_watch is not None

    def _watch_where_linked(self, name: str) -> None:
        """Watch where agent `name`'s folder points when it is a symlink (the static folder's watch
        sees the link, not edits behind it); drop the watch once it is no longer one."""
        observer = self._observer
        if observer is None:
            return
        link = self.static_path / name
        # Only an agent's folder: a link to anything else (a home folder) is no agent to watch.
        target = link.resolve() if link.is_symlink() and (link / AGENT_FILENAME).is_file() else None
        with self._rewatching:
            current = self._linked_watches.get(name)
            if current is not None and current[0] == target:
                return
            if current is not None:
                del self._linked_watches[name]
                with contextlib.suppress(KeyError, OSError, RuntimeError):
                    observer.unschedule(current[1])
            if target is None:
                return
            handler = _LinkedAgentHandler(name, self._notify_threadsafe)
            try:
                watch = observer.schedule(handler, str(target), recursive=True, event_filter=_change_events())
                self._linked_watches[name] = (target, watch)
            except OSError as exc:
                log.warning(
                    "cannot watch %s, where agent '%s' links to (%s): reload its edits with reload-agents",
                    target,
                    name,
                    exc,
                )

    async def stop(self) -> None:
        """Stop watching and wait for reloads in progress."""
        observer, self._observer = self._observer, None
        self._linked_watches.clear()
        if observer is not None:
            observer.stop()
            await asyncio.to_thread(observer.join, 5.0)
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self._refreshes:
            await asyncio.gather(*self._refreshes, return_exceptions=True)

    def _notify_threadsafe(self, name: str) -> None:
        """Called on the observer thread: hand the event to the event loop."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._debounce, name)
        except RuntimeError:
            # The loop closed between the check and the call: the server is stopping.
            log.debug("agent change for '%s' after the event loop closed", name)

    def _debounce(self, name: str) -> None:
        if self._observer is None or self._loop is None:
            return
        pending = self._timers.pop(name, None)
        if pending is not None:
            pending.cancel()
        self._timers[name] = self._loop.call_later(WATCH_DEBOUNCE_SECONDS, self._start_refresh, name)

    def _start_refresh(self, name: str) -> None:
        self._timers.pop(name, None)
        work = self._rewatch if name == _WHOLE_FOLDER else functools.partial(self.reload_agent, name)
        task = asyncio.get_running_loop().create_task(asyncio.to_thread(work))
        self._refreshes.add(task)
        self._refreshing[name] = task
        task.add_done_callback(functools.partial(self._refresh_done, name))

    def _refresh_done(self, name: str, task: asyncio.Task[bool]) -> None:
        self._refreshes.discard(task)
        if self._refreshing.get(name) is task:
            del self._refreshing[name]
        if not task.cancelled() and task.exception() is not None:
            log.error("reloading an edited agent failed", exc_info=task.exception())

    # --- internals ------------------------------------------------------------------------------

    def _entry(self, name: str) -> _Entry:
        check_name(name, "agent name")
        with self._lock:
            entry = self._known.get(name)
        entry = entry or self._find_on_disk(name)
        if entry is None:
            raise AgentNotFound(name, self.names(), self.static_path)
        return entry

    def _summarise(self, entry: _Entry) -> AgentSummary:
        with self._lock:
            agent = self._cache.get(entry.name)
        if agent is None:
            try:
                agent = self._load(entry)
            except ConfigError:
                agent = None
        with self._lock:
            problems = self._errors.get(entry.name)
        return _summary(entry, agent, "\n".join(problems) if problems else None)

    def _find_on_disk(self, name: str) -> _Entry | None:
        """The folder of `name`, static first."""
        if (self.static_path / name / AGENT_FILENAME).is_file():
            return _Entry(name, self.static_path / name, "static")
        if self._dynamic_folder_has(name):
            return _Entry(name, self.dynamic_path / name, "dynamic")
        return None

    def _dynamic_folder_has(self, name: str) -> bool:
        return (self.dynamic_path / name / AGENT_FILENAME).is_file()

    def _rediscover(self) -> list[_Entry]:
        """Scan both folders; forget agents whose folders are gone. Returns the entries, sorted."""
        entries = {d.name: _Entry(d.name, d, "dynamic") for d in discover_agents(self.dynamic_path)}
        shadowed: dict[str, Path] = {}
        for directory in discover_agents(self.static_path):
            if directory.name in entries:
                shadowed[directory.name] = entries[directory.name].directory
            entries[directory.name] = _Entry(directory.name, directory, "static")
        with self._lock:
            for gone in set(self._known) - set(entries):
                self._forget(gone)
            self._known = entries
            self._shadowed = shadowed
        return [entries[name] for name in sorted(entries)]

    def _load(self, entry: _Entry) -> Agent:
        """Read an agent's files; record (and re-raise as InvalidAgent) its problems, or clear them."""
        try:
            agent, warnings = load_agent(entry.directory, self._env)
        except ConfigError as exc:
            lines = [str(problem) for problem in exc.problems]
            with self._lock:
                changed = self._errors.get(entry.name) != lines
                self._errors[entry.name] = lines
            if changed:
                log.warning("agent '%s' is invalid:\n%s", entry.name, "\n".join(lines))
            raise InvalidAgent(entry.name, entry.directory, exc.problems) from None
        with self._lock:
            if self._errors.pop(entry.name, None) is not None:
                log.info("agent '%s' is valid again", entry.name)
        self._note_warnings(entry.name, [str(warning) for warning in warnings])
        return agent

    def _note_warnings(self, name: str, lines: list[str]) -> None:
        """Keep the warnings of the version of `name` that answers (a typo'd key is ignored, and
        the person who made it hears of it where they talk to the agent, not only here)."""
        with self._lock:
            changed = self._warnings.get(name, []) != lines
            if lines:
                self._warnings[name] = lines
            else:
                self._warnings.pop(name, None)
        if changed and lines:
            log.warning("agent '%s' loads with warnings:\n%s", name, "\n".join(lines))

    def _remember(self, agent: Agent) -> None:
        """Put `agent` in the cache as most recently used, evicting the least recently used. Lock held."""
        if self._guard is not None:
            self._guard.also_protect(_named_keys(agent, self._env))
        self._cache[agent.name] = agent
        self._cache.move_to_end(agent.name)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
            self._evictions += 1

    def _forget(self, name: str) -> None:
        """Drop everything known about `name`. Lock held."""
        self._known.pop(name, None)
        self._cache.pop(name, None)
        self._errors.pop(name, None)
        self._warnings.pop(name, None)
        self._shadowed.pop(name, None)

    def _remove_leftover_staging(self) -> None:
        """Remove staging folders a crash in the middle of `deploy` or `remove` left behind."""
        if not self.dynamic_path.is_dir():
            return
        for leftover in self.dynamic_path.glob(f"{_STAGING_PREFIX}*"):
            shutil.rmtree(leftover, ignore_errors=True)


def _change_events() -> list[type[FileSystemEvent]]:
    """The watchdog events of `_CHANGE_EVENTS`, and that some were lost, as a watch's filter.

    Watchdog asks the kernel only for what a watch's filter names: without one, inotify reports
    every open and read, and a turn's reads of `.duragent/` kept watchdog's threads busy for
    ~0.25 ms of CPU per turn, taking the GIL from the event loop, only to be dropped here.
    """
    return [*_entry_events(), FileModifiedEvent, DirModifiedEvent, FileClosedEvent, EventsLostEvent]


def _entry_events() -> list[type[FileSystemEvent]]:
    """The events of a folder's entries coming, going or being renamed (files and folders)."""
    return [
        FileCreatedEvent,
        DirCreatedEvent,
        FileDeletedEvent,
        DirDeletedEvent,
        FileMovedEvent,
        DirMovedEvent,
    ]


class _StaticFolderHandler(FileSystemEventHandler):
    """Watchdog handler: maps each file event under the static folder to the agent it belongs to."""

    def __init__(self, root: Path, notify: Callable[[str], None]):
        super().__init__()
        # Watchdog reports paths under the folder as scheduled; a symlinked agent folder inside it
        # must not be resolved away (its creation or removal is that agent's change).
        self.root = Path(os.path.abspath(root))
        self.resolved_root = root.resolve()
        self.notify = notify

    def dispatch(self, event: FileSystemEvent) -> None:
        """Called by watchdog on its thread for every event."""
        if isinstance(event, EventsLostEvent):
            self.notify(_WHOLE_FOLDER)  # the kernel's queue overflowed: any agent may have changed
            return
        if event.event_type not in _CHANGE_EVENTS:
            return
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            name = self._agent_of(os.fsdecode(raw)) if raw else None
            if name is not None:
                self.notify(name)

    def _agent_of(self, path: str) -> str | None:
        absolute = Path(os.path.abspath(path))
        if absolute.is_relative_to(self.root):
            parts = absolute.relative_to(self.root).parts
        elif (resolved := Path(path).resolve()).is_relative_to(self.resolved_root):
            parts = resolved.relative_to(self.resolved_root).parts
        else:
            return None
        if not parts or parts[0].startswith("."):
            return None
        return parts[0]


class _LinkedAgentHandler(FileSystemEventHandler):
    """Watchdog handler of the folder a symlinked agent folder points to: every change is that agent's."""

    def __init__(self, name: str, notify: Callable[[str], None]):
        super().__init__()
        self.name = name
        self.notify = notify

    def dispatch(self, event: FileSystemEvent) -> None:
        """Called by watchdog on its thread for every event under the linked folder."""
        if event.event_type in _CHANGE_EVENTS or isinstance(event, EventsLostEvent):
            self.notify(self.name)


class _FolderReplacedHandler(FileSystemEventHandler):
    """Watchdog handler of the static folder's parent: notices the static folder itself being
    created, removed or swapped for another, which its own (recursive) watch cannot see."""

    def __init__(self, folder: Path, notify: Callable[[str], None]):
        super().__init__()
        self.folder = os.path.abspath(folder)
        self.notify = notify

    def dispatch(self, event: FileSystemEvent) -> None:
        """Called by watchdog on its thread for every event in the parent folder."""
        if event.event_type not in ("created", "deleted", "moved"):
            return
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            if raw and os.path.abspath(os.fsdecode(raw)) == self.folder:
                self.notify(_WHOLE_FOLDER)
                return


def _summary(entry: _Entry, agent: Agent | None, error: str | None) -> AgentSummary:
    if agent is None:
        return AgentSummary(entry.name, "", None, None, None, entry.source, valid=False, error=error)
    return AgentSummary(
        name=entry.name,
        description=agent.description,
        version=agent.document.metadata.version,
        provider=agent.spec.model.provider,
        model=agent.spec.model.name,
        source=entry.source,
        valid=True,
        error=error,
    )


def _check_files(files: Mapping[str, str]) -> None:
    """Refuse file names that could leave the agent folder, and anything that is not text."""
    problems: list[Problem] = []
    if AGENT_FILENAME not in files:
        problems.append(Problem(f"the files must include {AGENT_FILENAME}", Location(AGENT_FILENAME)))
    folders = {str(parent) for name in files for parent in PurePosixPath(str(name)).parents}
    for relative, content in files.items():
        reason = _bad_file_name(relative)
        if reason is None and relative in folders:
            reason = f"{relative!r} is also a folder of other files"
        if reason is not None:
            problems.append(Problem(f"invalid file name: {reason}", Location(relative)))
        elif not isinstance(content, str) or "\x00" in content:
            problems.append(
                Problem("file content must be text (a JSON string without NUL)", Location(relative))
            )
    if problems:
        raise ConfigError(problems)


def _named_keys(agent: Agent, env: Mapping[str, str] | None) -> dict[str, str]:
    """The values of the variables the agent names as holding its keys (`api_key_env`), and of
    those its agent.yaml reads with `${NAME}` (an MCP server's token in `args`), by name."""
    environ = os.environ if env is None else env
    search = agent.spec.tools.web_search
    names = [agent.spec.model.key_variable, search.api_key_env if search else None]
    from duragent.secrets import NOT_SECRET_ENV, passed_credentials

    names += sorted(agent.referenced_env - NOT_SECRET_ENV)
    keys = {name: environ[name] for name in names if name and name in environ}
    # and the credentials its MCP servers are handed by name (`env: [NOTION_AUTH]`)
    passed = (name for server in agent.spec.mcp_servers for name in server.env)
    return {**passed_credentials(passed, environ), **keys}


def _refuse_secrets(files: Mapping[str, str], guard: SecretGuard | None) -> None:
    """Deployed files are committed to git: a secret in one (a key pasted into a prompt, or a
    value written out under `api_key:` in a YAML file, which git's commit screen would refuse
    after the agent was already served) is refused before anything is written."""
    from duragent.secrets import literal_secrets

    problems: list[Problem] = []
    for relative, content in files.items():
        unnamed = dict(literal_secrets(content)) if relative.lower().endswith((".yaml", ".yml")) else {}
        for number, line in enumerate(content.splitlines(), start=1):
            names = guard.find(line) if guard is not None else []
            if names:
                problems.append(
                    Problem(
                        f"contains a secret ({', '.join(names)}): deployed files are committed to git; "
                        "keep secrets in the environment and name them (api_key_env, ${VAR})",
                        Location(relative, number),
                    )
                )
            elif number in unnamed:
                problems.append(
                    Problem(
                        f"`{unnamed[number]}:` holds a secret written in the clear: deployed files are "
                        "committed to git; name an environment variable instead (api_key_env, ${VAR})",
                        Location(relative, number),
                    )
                )
    if problems:
        raise ConfigError(problems)


def _bad_file_name(relative: str) -> str | None:
    """Why `relative` is not a usable file name inside an agent folder, or None when it is."""
    if not isinstance(relative, str) or not relative:
        return "empty"
    if "\\" in relative or "\x00" in relative:
        return "use '/' between folders and no NUL characters"
    path = PurePosixPath(relative)
    if path.is_absolute():
        return "must be relative to the agent folder"
    if any(part in ("", ".", "..") or part.startswith(".") for part in relative.split("/")):
        return "no '..', '.', empty or hidden path parts"
    if any(len(part.encode()) > _MAX_NAME_BYTES for part in path.parts):
        return f"a file or folder name is longer than {_MAX_NAME_BYTES} bytes"
    if len(relative.encode()) > _MAX_PATH_BYTES or len(path.parts) - 1 > _MAX_DEPTH:
        return f"longer than {_MAX_PATH_BYTES} bytes or nested deeper than {_MAX_DEPTH} folders"
    return None


#: The longest file name most filesystems (ext4, APFS, NTFS) take.
_MAX_NAME_BYTES = 255
#: Well under PATH_MAX (4096) once inside the data folder, and deeper than any agent folder needs.
_MAX_PATH_BYTES = 1024
_MAX_DEPTH = 16


def _write_files(directory: Path, files: Mapping[str, str]) -> None:
    for relative, content in files.items():
        file = directory / relative
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(content, encoding="utf-8")
        if _is_tool_program(relative):
            file.chmod(0o755)


def _is_tool_program(relative: str) -> bool:
    """`tools/<name>/run` or `run.*`: JSON carries no file modes, and a tool folder's program must
    be executable to be a tool."""
    from duragent.tools.folders import TOOLS_FOLDER

    parts = PurePosixPath(relative).parts
    return len(parts) == 3 and parts[0] == TOOLS_FOLDER and (parts[2] == "run" or parts[2].startswith("run."))


def _relocated(problems: list[Problem], staged: Path, target: Path) -> list[Problem]:
    """Problems found in the staging folder, as if found in the agent folder: `agent.yaml:3:5`."""
    shown_target = display_path(target)
    spellings = sorted({display_path(staged), str(staged), str(staged.resolve())}, key=len, reverse=True)

    def message(text: str) -> str:
        for spelling in spellings:
            text = text.replace(spelling, shown_target)
        return text

    relocated: list[Problem] = []
    for problem in problems:
        location = problem.location
        if location is not None and location.file is not None:
            location = Location(_inside(location.file, staged), location.line, location.column)
        relocated.append(Problem(message(problem.message), location))
    return relocated


def _inside(file: str, staged: Path) -> str:
    """`file` (as a message shows it) relative to the staged agent folder, when it is inside it."""
    try:
        return Path(file).resolve().relative_to(staged.resolve()).as_posix()
    except ValueError:
        return file
