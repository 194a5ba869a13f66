"""The process manager: starts background processes, watches them, and reports each one's end.

A plain process runs `bash -c` in its own process group with a pipe for stdin; its output
(stdout and stderr together) goes to `<handle>.log`. An interactive one runs in tmux
(duragent.processes.tmux). Each has a task that waits for it to end, kills it at its timeout
(SIGTERM to the group, `kill_grace` seconds, then SIGKILL), records the outcome in
`<handle>.yaml`, and then tells `reporter` (the owning session) and every `on_end` listener
(schedules linked with `until_process`). A report that fails (the session cannot be loaded
right now) is tried again with growing waits.

A restart cannot follow a plain process (its output pipe died with the server): at the next
start it is marked `lost` (and its group killed if it still runs) and reported like any end.
tmux processes survive and are adopted again. An end not yet reported when the server stopped
is reported at the next start, so no completion is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from duragent.child_lifetime import executable, tied_to_this_process
from duragent.errors import ConfigError, UsageError
from duragent.processes.output import (
    OUTPUT_GITIGNORE,
    LogSlice,
    OutputLog,
    kept_bytes,
    read_slice,
    rotate_if_large,
    rotated_path,
    tail_text,
)
from duragent.processes.record import (
    ProcessNotFound,
    ProcessRecord,
    ProcessStatus,
    is_handle,
    new_handle,
    read_record,
    render_record,
)
from duragent.processes.tmux import Tmux, TmuxError, tmux_available
from duragent.stores.base import Change, ChangeListener, ignore_changes, utcnow
from duragent.stores.filesystem.atomic import write_atomic
from duragent.tools.bash import kill_group, open_pipe_reader

log = logging.getLogger(__name__)

#: Tells the owning session that a process ended: (the final record, the tail of its output).
Reporter = Callable[[ProcessRecord, str], Awaitable[None]]
#: Told of every end, reported or not (a schedule linked to the process is cancelled).
EndListener = Callable[[ProcessRecord], Awaitable[None]]
#: How long to keep reading after the process exits, for output still in the pipe.
DRAIN_SECONDS = 1.0
_READ_CHUNK = 64 * 1024
#: How long a stop waits for SIGKILL to land (it cannot be ignored, but acts a moment after it is sent).
KILL_LANDS = 1.0


@dataclass(frozen=True)
class ProcessSettings:
    """Limits of background processes."""

    #: Size at which a log rotates (the log keeps at most about twice this).
    log_cap_bytes: int = 1024 * 1024
    #: Seconds between SIGTERM and SIGKILL when a process is stopped.
    kill_grace: float = 5.0
    #: Processes one agent may have running at once.
    max_running: int = 8
    #: Timeout of a process that names none, and the longest one may ask for.
    default_timeout: float = 3600.0
    max_timeout: float = 24 * 3600.0
    #: Seconds between looks at an interactive (tmux) process.
    poll_interval: float = 0.5
    #: Bytes of output's end quoted in the `[process finished]` message.
    tail_bytes: int = 2000
    #: Seconds before a failed report is tried again (doubling up to `report_retry_max`).
    report_retry: float = 5.0
    report_retry_max: float = 300.0
    #: Ended (and reported) processes whose record and log are kept; older ones are forgotten as
    #: newer ones end, and at start.
    keep_ended: int = 200
    #: Seconds `write` waits for a process to read its input before it returns (the rest stays
    #: queued): a process that never reads its stdin must not hold the agent's turn until it ends.
    write_wait: float = 5.0


@dataclass(frozen=True)
class SpawnRequest:
    """What to start, for whom, and where (`workdir` relative to `work_root`, the agent's folder)."""

    agent: str
    session_id: str
    command: str
    work_root: Path
    workdir: str = "."
    label: str | None = None
    timeout_seconds: float | None = None
    interactive: bool = False
    env: Mapping[str, str] = field(default_factory=dict)
    #: The schedule whose task's turn asks for it (None for any other turn).
    scheduled_by: str | None = None


@dataclass
class _Running:
    """A process being watched."""

    record: ProcessRecord
    process: asyncio.subprocess.Process | None = None
    output: OutputLog | None = None
    task: asyncio.Task[None] | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    #: Set by `kill` (status killed) or the timeout (timed_out): why the process was stopped.
    stop: tuple[ProcessStatus, str] | None = None
    #: Callers of `wait` waiting right now: an end they see is reported to them, not to the session.
    waiting: int = 0
    #: A plain process's output being copied to its log, and the pipe it comes through.
    reader: asyncio.Task[None] | None = None
    transport: asyncio.BaseTransport | None = None


class ProcessManager:
    """Every background process of one server, in `<data dir>/processes/`."""

    def __init__(
        self,
        folder: Path,
        *,
        settings: ProcessSettings | None = None,
        on_change: ChangeListener = ignore_changes,
        clock: Callable[[], datetime] = utcnow,
        tmux_socket: str | None = None,
    ):
        self.folder = folder
        self.settings = settings or ProcessSettings()
        self.on_change = on_change
        self.clock = clock
        self.tmux = Tmux(tmux_socket) if tmux_socket and tmux_available() else None
        self.reporter: Reporter | None = None
        self.on_end: list[EndListener] = []
        self._records: dict[str, ProcessRecord] = {}
        self._running: dict[str, _Running] = {}
        self._reports: set[asyncio.Task[None]] = set()
        self._closing = False
        #: The handles (and agents) of spawns under way: they count against `max_running` already.
        self._starting: dict[str, str] = {}
        #: Ends a `wait` (or the agent's `kill`) saw, whose tool result answers the session: marked
        #: reported once that result is stored (`answered`), reported as usual if it never is.
        self._unanswered: set[str] = set()
        #: The handles of the records the last run left (`load`), dealt with by `start`.
        self._left: list[str] | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    async def load(self) -> None:
        """Read the records the last run left, once (`start` does, if nobody did before it).

        A server loads them before its recovery and starts after it: the turns recovery resumes
        may ask about them meanwhile (which schedule started one) and spawn their own."""
        if self._left is not None:
            return
        left = []
        for record in await asyncio.to_thread(self._load):
            if record.handle not in self._records:  # (one spawned already is no restart's leftover)
                self._records[record.handle] = record
                left.append(record.handle)
        self._left = left

    async def start(self) -> None:
        """Read every record: adopt live tmux processes, mark plain ones `lost`, report unreported ends."""
        ignore = await asyncio.to_thread(self._prepare_folder)
        # committed like the records beside it, or `git status` shows it forever; told at every
        # start, not only when written: a kill -9 before its commit would leave it untracked
        # (the committer makes no commit when it is committed already)
        self.on_change(Change((ignore,), "process", "processes", "output kept out of git"))
        await self.load()
        for handle in self._left or ():
            record = self._records[handle]
            if record.status == "running":
                await self._recover(record)
            elif not record.reported:
                self._report_later(record)
        await self.prune()

    def _prepare_folder(self) -> Path:
        """Create the folder and its .gitignore (if missing); the .gitignore's path."""
        self.folder.mkdir(parents=True, exist_ok=True)
        ignore = self.folder / ".gitignore"
        if not ignore.exists():
            ignore.write_text(OUTPUT_GITIGNORE, encoding="utf-8")
        return ignore

    def _load(self) -> list[ProcessRecord]:
        records = []
        for path in sorted(self.folder.glob("proc_*.yaml")):
            try:
                records.append(read_record(path))
            except ConfigError as exc:
                log.error("background process record not loaded: %s", exc)
        return records

    async def _recover(self, record: ProcessRecord) -> None:
        if record.interactive and self.tmux is not None and await self.tmux.alive(record.handle):
            running = _Running(record)
            self._running[record.handle] = running
            running.task = asyncio.create_task(self._watch_tmux(running), name=f"process {record.handle}")
            log.info("adopted background process %s (tmux)", record.handle)
            return
        exit_code = self._exit_code(record.handle) if record.interactive else None
        if exit_code is not None:
            await self._finish(_Running(record), "exited", exit_code)
            return
        _kill_stale_group(record)
        reason = "the server restarted while it ran, so it could not be followed"
        await self._finish(_Running(record), "lost", None, reason=reason)

    async def close(self) -> None:
        """Stop watching: plain processes are stopped (`lost`, reported at next start); tmux ones go on."""
        self._closing = True
        watched = list(self._running.values())
        for running in watched:
            if running.task is not None:
                running.task.cancel()
        for running in watched:
            if running.task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await running.task
        # all at once: one by one, each process that ignores SIGTERM would hold the stop for its grace
        await asyncio.gather(*(self._stop_at_close(r) for r in watched if r.process is not None))
        self._running.clear()
        for task in list(self._reports):
            task.cancel()
        for task in list(self._reports):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _stop_at_close(self, running: _Running) -> None:
        """Stop a plain process the server can no longer follow and record it `lost`."""
        assert running.process is not None
        await self._terminate(running, grace=min(self.settings.kill_grace, 2.0))
        if running.reader is not None:
            await asyncio.wait({running.reader}, timeout=DRAIN_SECONDS)
            running.reader.cancel()
        if running.transport is not None:
            running.transport.close()
        if running.output is not None:
            running.output.close()
        reason = "the server stopped while it ran"
        record = self._ended(running, "lost", running.process.returncode, reason)
        self._records[record.handle] = record
        await self._save(record, "lost (server stopped)")
        # a turn waiting on it (`wait`, `kill`) gets its answer now, not at the end of the stop's
        # grace; still reported at the next start, as the turn may not outlive the stop
        running.ended.set()

    # --- what agents ask for -----------------------------------------------------------------

    async def spawn(self, request: SpawnRequest) -> ProcessRecord:
        """Start a process; UsageError says why it could not start."""
        if self._closing:
            raise UsageError("the server is shutting down")
        running = {h for h, r in self._running.items() if r.record.agent == request.agent}
        running |= {h for h, agent in self._starting.items() if agent == request.agent}
        if len(running) >= self.settings.max_running:
            raise UsageError(
                f"{len(running)} background processes are already running (the limit is "
                f"{self.settings.max_running}); wait for one to end or kill one"
            )
        # counted from here: spawns asked for together (one turn's parallel calls) all see it
        handle = new_handle()
        self._starting[handle] = request.agent
        try:
            return await self._start(request, handle)
        finally:
            del self._starting[handle]

    async def _start(self, request: SpawnRequest, handle: str) -> ProcessRecord:
        """Check what `request` asks for and start it as `handle` (its place is taken already)."""
        cwd, workdir = _working_directory(request.work_root, request.workdir)
        timeout = request.timeout_seconds or self.settings.default_timeout
        if timeout > self.settings.max_timeout:
            raise UsageError(
                f"timeout {timeout:g} s is longer than the limit {self.settings.max_timeout:g} s"
            )
        if request.interactive and self.tmux is None:
            raise UsageError("interactive processes need tmux, which is not installed on the server")
        record = ProcessRecord(
            handle=handle,
            agent=request.agent,
            session_id=request.session_id,
            command=request.command,
            workdir=workdir,
            label=request.label,
            interactive=request.interactive,
            started_at=self.clock(),
            timeout_seconds=timeout,
            scheduled_by=request.scheduled_by,
        )
        await asyncio.to_thread(self._prepare_folder)
        if request.interactive:
            return await self._spawn_tmux(record, cwd, request.env)
        return await self._spawn_plain(record, cwd, request.env)

    async def _spawn_plain(self, record: ProcessRecord, cwd: Path, env: Mapping[str, str]) -> ProcessRecord:
        read_fd, write_fd = os.pipe()
        try:
            bash = executable("bash", env.get("PATH", os.defpath), cwd)
            # Killed with the server on Linux (bash execs a lone command, which inherits that):
            # nobody would be left to read its output, time it or report its end.
            program, argv = tied_to_this_process(bash, ["bash", "-c", record.command])
            process = await asyncio.create_subprocess_exec(
                program,
                *argv,
                cwd=cwd,
                env={**env, PROCESS_MARKER: record.handle},
                stdin=asyncio.subprocess.PIPE,
                stdout=write_fd,
                stderr=write_fd,
                start_new_session=True,  # its own process group, stopped as a whole
            )
        except OSError as exc:
            os.close(read_fd)
            raise UsageError(f"could not start bash in {record.workdir}: {exc.strerror or exc}") from None
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        # It runs: from here it is followed whatever becomes of the turn that asked for it (one
        # cancelled meanwhile left it running with nobody reading its output, timing it or
        # reporting its end, and a `kill` of it waiting for an end nobody would see).
        return await asyncio.shield(self._follow_plain(record, process, read_fd))

    async def _follow_plain(
        self, record: ProcessRecord, process: asyncio.subprocess.Process, read_fd: int
    ) -> ProcessRecord:
        """Record a plain process that started and watch it."""
        record = record.model_copy(update={"pid": process.pid, "pid_started": _start_ticks(process.pid)})
        running = _Running(
            record, process, OutputLog(self.log_path(record.handle), self.settings.log_cap_bytes)
        )
        self._running[record.handle] = running
        self._records[record.handle] = record
        await self._save(record, f"started: {record.command[:60]}")
        stream, transport = await open_pipe_reader(read_fd)
        running.task = asyncio.create_task(
            self._watch_plain(running, stream, transport), name=f"process {record.handle}"
        )
        return record

    async def _spawn_tmux(self, record: ProcessRecord, cwd: Path, env: Mapping[str, str]) -> ProcessRecord:
        await asyncio.to_thread(self.log_path(record.handle).write_bytes, b"")
        # (shielded like a plain one's start: a tmux session started and never recorded ran on
        # unseen, not even adopted at the next start)
        return await asyncio.shield(self._start_tmux(record, cwd, env))

    async def _start_tmux(self, record: ProcessRecord, cwd: Path, env: Mapping[str, str]) -> ProcessRecord:
        """Start an interactive process, record it and watch it."""
        assert self.tmux is not None
        log_path = self.log_path(record.handle)
        try:
            pid = await self.tmux.start(
                record.handle,
                record.command,
                cwd=cwd,
                env={**env, PROCESS_MARKER: record.handle},
                log=log_path,
                exit_file=self._exit_path(record.handle),
            )
        except TmuxError as exc:
            raise UsageError(str(exc)) from None
        record = record.model_copy(
            update={"pid": pid or None, "pid_started": _start_ticks(pid) if pid else None}
        )
        running = _Running(record)
        self._running[record.handle] = running
        self._records[record.handle] = record
        await self._save(record, f"started in tmux: {record.command[:60]}")
        running.task = asyncio.create_task(self._watch_tmux(running), name=f"process {record.handle}")
        return record

    def list(self, agent: str | None = None) -> list[ProcessRecord]:
        """Processes (of `agent`), oldest first, with their current output size."""
        return [self._current(r) for r in self._records.values() if agent is None or r.agent == agent]

    def get(self, handle: str, agent: str | None = None) -> ProcessRecord:
        """One process (ProcessNotFound, also when it belongs to another agent)."""
        record = self._records.get(handle) if is_handle(handle) else None
        if record is None or (agent is not None and record.agent != agent):
            raise ProcessNotFound(handle)
        return self._current(record)

    def scheduled_by(self, handle: str, agent: str, session_id: str) -> str | None:
        """The schedule whose task started `handle` in `session_id` (None for any other process)."""
        record = self._records.get(handle)
        if record is None or record.agent != agent or record.session_id != session_id:
            return None
        return record.scheduled_by

    def _current(self, record: ProcessRecord) -> ProcessRecord:
        running = self._running.get(record.handle)
        if running is not None and not record.ended:
            if running.output is not None:
                return record.model_copy(update={"output_bytes": running.output.written})
            return record.model_copy(
                update={"output_bytes": record.output_bytes + kept_bytes(self.log_path(record.handle))}
            )
        return record

    async def read_log(self, handle: str, agent: str | None, offset: int | None, limit: int) -> LogSlice:
        """Part of a process's output (offset None: its end)."""
        record = self.get(handle, agent)
        return await asyncio.to_thread(read_slice, self.log_path(handle), record.output_bytes, offset, limit)

    async def write(self, handle: str, agent: str | None, text: str, *, eof: bool = False) -> int:
        """Send `text` to the process's stdin (typed into an interactive one); `eof` closes stdin.

        Returns how many bytes the process has not read yet: after `write_wait` seconds they stay
        queued (sent as it reads, or at the close) and the call returns rather than wait on.
        """
        record = self.get(handle, agent)
        running = self._running.get(handle)
        if running is None or record.ended:
            raise UsageError(f"process {handle} is not running ({record.outcome()})")
        if running.process is None:
            assert self.tmux is not None
            try:
                if text:
                    await self.tmux.send_keys(handle, text, enter=False)
                if eof:
                    # a terminal has no stdin to close: Ctrl-D is how one ends a program's input
                    await self.tmux.press(handle, "C-d")
            except TmuxError as exc:
                raise UsageError(str(exc)) from None
            return 0
        stdin = running.process.stdin
        if stdin is None or stdin.is_closing():
            raise UsageError(f"the stdin of process {handle} is closed")
        try:
            stdin.write(text.encode())
            drain = asyncio.ensure_future(stdin.drain())
            try:
                done, _ = await asyncio.wait({drain}, timeout=self.settings.write_wait)
            finally:
                drain.cancel()  # (no-op once it is done)
            if done:
                drain.result()  # a process that closed its stdin: BrokenPipeError, ConnectionResetError
            waiting = stdin.transport.get_write_buffer_size()
            if eof:
                stdin.close()  # (what is still queued is written first)
        except (BrokenPipeError, ConnectionResetError):
            raise UsageError(f"process {handle} no longer reads its stdin") from None
        return waiting

    async def capture(self, handle: str, agent: str | None, lines: int) -> str:
        """The screen of an interactive process."""
        self._interactive(handle, agent)
        assert self.tmux is not None
        try:
            return await self.tmux.capture(handle, lines)
        except TmuxError as exc:
            raise UsageError(str(exc)) from None

    async def send_keys(self, handle: str, agent: str | None, keys: str, *, enter: bool) -> None:
        """Type into an interactive process."""
        self._interactive(handle, agent)
        assert self.tmux is not None
        try:
            await self.tmux.send_keys(handle, keys, enter=enter)
        except TmuxError as exc:
            raise UsageError(str(exc)) from None

    def _interactive(self, handle: str, agent: str | None) -> None:
        record = self.get(handle, agent)
        if not record.interactive:
            raise UsageError(f"process {handle} is not interactive (spawn it with interactive: true)")
        if record.ended or handle not in self._running or self.tmux is None:
            raise UsageError(f"process {handle} is not running ({record.outcome()})")

    async def kill(
        self,
        handle: str,
        agent: str | None = None,
        reason: str = "killed on request",
        *,
        answered: bool = False,
    ) -> ProcessRecord:
        """Stop a running process (SIGTERM, grace, SIGKILL) and wait until it is recorded as killed.

        `answered`: the caller tells the session itself (the agent's own `kill`, whose result says
        how it ended), so no `[process finished]` message follows, as after a `wait` that saw it.
        """
        record = self.get(handle, agent)
        running = self._running.get(handle)
        if running is None or record.ended:
            raise UsageError(f"process {handle} is not running ({record.outcome()})")
        running.stop = ("killed", reason)
        running.waiting += int(answered)
        try:
            if running.process is not None:
                await self._terminate(running)
            else:
                await self._stop_tmux(running)
            await running.ended.wait()
        except asyncio.CancelledError:
            if answered and running.ended.is_set():
                self._answer_dropped(handle)
            raise
        finally:
            running.waiting -= int(answered)
        return self.get(handle)

    async def stop_session(self, session_id: str, why: str) -> tuple[ProcessRecord, ...]:
        """Stop every process `session_id` started that still runs (the session ended or was
        deleted), all at once, each as `kill` does; returns their records (status `killed`)."""
        handles = [h for h, r in self._running.items() if r.record.session_id == session_id]
        if not handles:
            return ()
        reason = f"its session ended ({why})"
        log.info("session %s ended (%s): stopping its background processes %s", session_id, why, handles)
        outcomes = await asyncio.gather(
            *(self.kill(h, reason=reason) for h in handles), return_exceptions=True
        )
        stopped = []
        for handle, outcome in zip(handles, outcomes, strict=True):
            if isinstance(outcome, ProcessRecord):
                stopped.append(outcome)
            elif not isinstance(outcome, UsageError):  # (UsageError: it ended by itself meanwhile)
                log.error("process %s of ended session %s: not stopped: %s", handle, session_id, outcome)
        return tuple(stopped)

    async def wait(self, handle: str, seconds: float) -> ProcessRecord:
        """Wait up to `seconds` for a process to end; an end seen here is not reported to its session."""
        running = self._running.get(handle)
        if running is None:
            return self.get(handle)
        running.waiting += 1
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(running.ended.wait()), seconds)
        except asyncio.CancelledError:
            if running.ended.is_set():
                self._answer_dropped(handle)  # (its turn was cancelled: nobody answers the session)
            raise
        finally:
            running.waiting -= 1
        return self.get(handle)

    async def answered(self, handle: str) -> None:
        """The end of `handle` that a `wait` (or the agent's `kill`) saw is now stored in its session
        as that call's result: mark it reported (until then a crash leaves it to be reported)."""
        if handle not in self._unanswered:
            return
        self._unanswered.discard(handle)
        record = self._records.get(handle)
        if record is not None and not record.reported:
            reported = record.model_copy(update={"reported": True})
            self._records[handle] = reported
            await self._save(reported, "reported (answered by the call that waited for it)")

    def _answer_dropped(self, handle: str) -> None:
        """The call that saw the end of `handle` will not answer the session: report it as usual."""
        if handle not in self._unanswered:
            return
        self._unanswered.discard(handle)
        record = self._records.get(handle)
        if record is not None and not record.reported and self.reporter is not None:
            task = asyncio.create_task(self._tell_session(record, self.reporter), name=f"report {handle}")
            self._reports.add(task)
            task.add_done_callback(self._reports.discard)

    def log_path(self, handle: str) -> Path:
        """The process's output file."""
        return self.folder / f"{handle}.log"

    def _exit_path(self, handle: str) -> Path:
        return self.folder / f"{handle}.exit"

    def tail(self, handle: str) -> str:
        """The end of a process's output, as quoted when it finishes."""
        return tail_text(self.log_path(handle), self.settings.tail_bytes)

    # --- watching ----------------------------------------------------------------------------

    async def _watch_plain(
        self, running: _Running, stream: asyncio.StreamReader, transport: asyncio.BaseTransport
    ) -> None:
        process, output = running.process, running.output
        assert process is not None
        assert output is not None
        reader = running.reader = asyncio.create_task(_pump(stream, output))
        running.transport = transport
        try:
            timeout = running.record.timeout_seconds or self.settings.default_timeout
            done, _ = await asyncio.wait({asyncio.ensure_future(process.wait())}, timeout=timeout)
            if not done:
                running.stop = ("timed_out", f"timed out after {timeout:g} s")
                await self._terminate(running)
            exit_code = await process.wait()
            finished, _ = await asyncio.wait({reader}, timeout=DRAIN_SECONDS)
            if not finished:
                kill_group(process.pid, signal.SIGKILL)  # children still held the output open
                reader.cancel()
            status, reason = running.stop or ("exited", None)
        finally:
            if not self._closing:
                # (at a server stop the output is still read while the process is stopped: a
                # process writing as it cleans up would die of SIGPIPE mid-way)
                reader.cancel()
                transport.close()
        output.close()
        await self._finish(running, status, exit_code, reason=reason)

    async def _watch_tmux(self, running: _Running) -> None:
        assert self.tmux is not None
        handle = running.record.handle
        timeout = running.record.timeout_seconds or self.settings.default_timeout
        while await self.tmux.alive(handle):
            await self._rotate_tmux_log(running)
            if running.stop is None and running.record.duration_seconds(self.clock()) > timeout:
                running.stop = ("timed_out", f"timed out after {timeout:g} s")
                await self._stop_tmux(running)
            await asyncio.sleep(self.settings.poll_interval)
        # once more: what it wrote since the last look may be far more than the cap
        await self._rotate_tmux_log(running)
        status, reason = running.stop or ("exited", None)
        await self._finish(running, status, self._exit_code(handle), reason=reason)

    async def _rotate_tmux_log(self, running: _Running) -> None:
        """Rotate an interactive process's log if it passed the cap; `output_bytes` counts what
        rotation dropped (while it runs; the files hold the rest)."""
        handle = running.record.handle
        dropped = await asyncio.to_thread(rotate_if_large, self.log_path(handle), self.settings.log_cap_bytes)
        if dropped:
            running.record = running.record.model_copy(
                update={"output_bytes": running.record.output_bytes + dropped}
            )
            self._records[handle] = running.record

    async def _stop_tmux(self, running: _Running) -> None:
        assert self.tmux is not None
        pid = running.record.pid
        if pid is not None:
            kill_group(pid, signal.SIGTERM)
            for _ in range(int(self.settings.kill_grace / 0.1)):
                if await self._tmux_ended(running.record.handle, pid):
                    return
                await asyncio.sleep(0.1)
        await self.tmux.kill(running.record.handle)
        if pid is not None:
            kill_group(pid, signal.SIGKILL)  # what outlived SIGTERM and the terminal's SIGHUP
            await _group_ends(pid, KILL_LANDS)

    async def _tmux_ended(self, handle: str, pid: int) -> bool:
        """True once the terminal is closed and nothing of its process group runs (a child that
        ignores SIGTERM and SIGHUP outlives the terminal)."""
        assert self.tmux is not None
        return not await self.tmux.alive(handle) and not await asyncio.to_thread(_group_alive, pid)

    async def _terminate(self, running: _Running, grace: float | None = None) -> None:
        """SIGTERM to the process group, then SIGKILL to what is left of it after the grace period."""
        process = running.process
        assert process is not None
        kill_group(process.pid, signal.SIGTERM)
        # (the whole group, not only the shell: a child that ignores SIGTERM outlives it, and
        # writing elsewhere than the log it is never found by the drain)
        if not await _group_ends(process.pid, self.settings.kill_grace if grace is None else grace):
            kill_group(process.pid, signal.SIGKILL)
            await _group_ends(process.pid, KILL_LANDS)
        await process.wait()

    def _exit_code(self, handle: str) -> int | None:
        try:
            text = self._exit_path(handle).read_text(encoding="utf-8").strip()
        except OSError:
            return None
        return int(text) if text.lstrip("-").isdigit() else None

    def _ended(
        self, running: _Running, status: ProcessStatus, exit_code: int | None, reason: str | None
    ) -> ProcessRecord:
        record = running.record
        output_bytes = (
            running.output.written
            if running.output is not None
            else record.output_bytes + kept_bytes(self.log_path(record.handle))
        )
        return record.model_copy(
            update={
                "status": status,
                "exit_code": exit_code,
                "ended_at": self.clock(),
                "reason": reason,
                "output_bytes": output_bytes,
            }
        )

    async def _finish(
        self, running: _Running, status: ProcessStatus, exit_code: int | None, *, reason: str | None = None
    ) -> None:
        """Record the end, wake waiters, and report it (unless a `wait` saw it: the waiting call's
        result tells the session, and `answered` marks it reported once that result is stored; a
        crash before that leaves it unreported, so the next start reports it)."""
        record = self._ended(running, status, exit_code, reason)
        seen_by_waiter = running.waiting > 0
        if seen_by_waiter:
            self._unanswered.add(record.handle)
        self._records[record.handle] = record
        self._running.pop(record.handle, None)
        await self._save(record, record.outcome())
        running.ended.set()
        self._report_later(record, to_session=not seen_by_waiter)

    def _report_later(self, record: ProcessRecord, *, to_session: bool = True) -> None:
        task = asyncio.create_task(self._report(record, to_session), name=f"report {record.handle}")
        self._reports.add(task)
        task.add_done_callback(self._reports.discard)

    async def _report(self, record: ProcessRecord, to_session: bool) -> None:
        for listener in self.on_end:
            try:
                await listener(record)
            except Exception:
                log.exception("process %s: end listener failed", record.handle)
        if to_session and self.reporter is not None:
            await self._tell_session(record, self.reporter)
        # as they end, not only at a start: a server that ran for months kept every record and
        # log (up to 2 MiB each) of an agent that starts a process every few minutes
        await self.prune()

    async def _tell_session(self, record: ProcessRecord, reporter: Reporter) -> None:
        """Report the end to the owning session, trying again until it gets it; then record that."""
        tail = await asyncio.to_thread(self.tail, record.handle)
        wait = self.settings.report_retry
        while True:
            try:
                await reporter(record, tail)
                break
            except Exception as exc:
                # The session's store is down, or (with several workers) another worker holds the
                # session: try again, with growing waits; a stop leaves it for the next start.
                log.warning(
                    "process %s: could not report its end to session %s (retry in %.0f s): %s",
                    record.handle,
                    record.session_id,
                    wait,
                    exc,
                )
            await asyncio.sleep(wait)
            wait = min(wait * 2, self.settings.report_retry_max)
        reported = record.model_copy(update={"reported": True})
        self._records[record.handle] = reported
        await self._save(reported, "reported")

    async def _save(self, record: ProcessRecord, summary: str) -> None:
        path = self.folder / f"{record.handle}.yaml"
        await asyncio.to_thread(write_atomic, path, render_record(record).encode())
        self.on_change(Change((path,), "process", record.handle, summary))

    async def prune(self) -> tuple[str, ...]:
        """Forget the oldest ended, reported processes beyond `keep_ended`: records, logs, exit files.

        The records leave the working tree (git keeps them in its history, the deletion is
        committed); returns the handles forgotten.
        """
        ended = sorted(
            (r for r in self._records.values() if r.ended and r.reported),
            key=lambda r: (r.ended_at or r.started_at, r.handle),
        )
        old = ended[: max(len(ended) - self.settings.keep_ended, 0)]
        if not old:
            return ()
        paths = [self.folder / f"{r.handle}.yaml" for r in old]
        await asyncio.to_thread(self._remove_files, [r.handle for r in old])
        for record in old:
            self._records.pop(record.handle, None)
        self.on_change(Change(tuple(paths), "process", "processes", f"forgot {len(old)} ended"))
        return tuple(r.handle for r in old)

    def _remove_files(self, handles: Sequence[str]) -> None:
        for handle in handles:
            log_path = self.log_path(handle)
            for path in (
                self.folder / f"{handle}.yaml",
                log_path,
                rotated_path(log_path),
                self._exit_path(handle),
            ):
                path.unlink(missing_ok=True)


def _working_directory(root: Path, workdir: str) -> tuple[Path, str]:
    """The absolute folder to run in and its path relative to `root`; UsageError when it escapes."""
    base = root.resolve()
    target = (base / workdir).resolve()
    if not target.is_relative_to(base):
        raise UsageError(f"workdir {workdir!r} is outside the agent's work folder")
    if not target.is_dir():
        raise UsageError(f"workdir {workdir!r} does not exist in the agent's work folder")
    return target, str(target.relative_to(base)) or "."


async def _pump(stream: asyncio.StreamReader, output: OutputLog) -> None:
    while chunk := await stream.read(_READ_CHUNK):
        output.append(chunk)


async def _group_ends(pgid: int, within: float) -> bool:
    """Wait up to `within` seconds for every process of group `pgid` to end; False if one still runs."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while await asyncio.to_thread(_group_alive, pgid):
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def _group_alive(pgid: int) -> bool:
    """True while some process of group `pgid` still runs."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # (a member that changed its user: still there)
    return _runs_in_group(pgid)


def _runs_in_group(pgid: int) -> bool:
    """True when a process of group `pgid` is not a zombie (Linux; elsewhere always True).

    A member whose parent died waits as a zombie until init reaps it, which some inits (in
    containers) do late: the group is over all the same, and a kill need not wait out its grace.
    """
    if not Path("/proc").is_dir():
        return True
    return any(True for _member in _group_members(pgid))


def _group_members(pgid: int) -> Iterator[_Member]:
    """The processes of group `pgid` that are not zombies, from /proc (Linux)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # (gone meanwhile)
        if len(fields) > 19 and fields[2] == str(pgid) and fields[0] != "Z":
            yield _Member(int(stat.parent.name), session=int(fields[3]), started=int(fields[19]))


#: Set in every background process's environment to its handle (`proc_...`): what a restart
#: recognises its leftovers by (`_kill_stale_group`).
PROCESS_MARKER = "DURAGENT_PROCESS"


@dataclass(frozen=True)
class _Member:
    """A process as /proc/PID/stat shows it: its id, session id and start (clock ticks since boot)."""

    pid: int
    session: int
    started: int


def _start_ticks(pid: int) -> int | None:
    """When `pid` started (clock ticks since boot, Linux); None where /proc is not available."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return int(fields[19]) if len(fields) > 19 and fields[19].isdigit() else None


def _kill_stale_group(record: ProcessRecord) -> None:
    """Stop what is left of a process the server lost: its group, while its pid is still that
    process (same start), or once that process is gone, while a process of the group carries its
    handle in its environment (`PROCESS_MARKER`): its `bash -c` dies with the server, but a
    command's own children do not (`sleep 45 &` ran on, orphaned, for good).

    The marker, not the group's number, says the group is its: once its leftovers all end, the
    number is free, and a process of anybody's that takes it may lead a group of its own. While
    one marked member runs, the number cannot be reused, and only processes of its session can
    join the group: the whole group is stopped at once (those that cleared their environment too).
    """
    if record.pid is None or record.pid_started is None:
        return
    if _start_ticks(record.pid) == record.pid_started:
        kill_group(record.pid, signal.SIGKILL)
        return
    members = [
        m for m in _group_members(record.pid) if m.session == record.pid and m.started >= record.pid_started
    ]
    if not members:
        return
    marker = f"{PROCESS_MARKER}={record.handle}".encode()
    if any(marker in _environment(member.pid) for member in members):
        kill_group(record.pid, signal.SIGKILL)
        log.info(
            "background process %s: stopped what it left running (%d process(es))",
            record.handle,
            len(members),
        )
        return
    log.warning(
        "background process %s: %d process(es) in its process group %d run on, left alone: none "
        "carries %s=%s (started by an older version, or another program's that took the number)",
        record.handle,
        len(members),
        record.pid,
        PROCESS_MARKER,
        record.handle,
    )


def _environment(pid: int) -> list[bytes]:
    """The `NAME=value` entries of a process's environment ([] when it cannot be read)."""
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return []
