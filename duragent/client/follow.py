"""Follow a session's event stream in the background, resuming from the last position after a drop.

`EventFollower` keeps one `GET /events` open (which counts as an attached client), puts every
event into a queue in order, and reconnects with the last position it saw when the connection
breaks, so nothing is lost or shown twice. It stops after the session's `session_end`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from duragent.client.http import ApiClient, ApiError, ServerEvent, ServerUnreachable
from duragent.client.state import position_key

log = logging.getLogger(__name__)

#: How long a broken stream keeps trying to reconnect before giving up.
RECONNECT_FOR = 15.0
#: How long the workspace's server may be unreachable before its client is told.
GONE_AFTER = 2.0


#: Marker events the follower puts in its queue (never sent by a server): the workspace's server
#: stopped answering (it keeps looking), and answers again.
SERVER_GONE, SERVER_BACK = "_server_gone", "_server_back"
#: The last event of a session: the follower stops after it.
SESSION_END = "session_end"


class StreamLost(ServerUnreachable):
    """The event stream broke and could not be re-opened."""


class EventFollower:
    """A session's events, replayed from `after` and then live, read into a queue by a task."""

    def __init__(
        self,
        api: ApiClient,
        session_id: str,
        *,
        after: str | None,
        relocate: Callable[[], str | None] | None = None,
    ):
        self.api = api
        self.session_id = session_id
        self.position = after
        #: Where the server is now (None: nowhere), for a client of the workspace's own server:
        #: it keeps looking instead of giving up, and follows the server to its new address.
        self.relocate = relocate
        self.queue: asyncio.Queue[ServerEvent | BaseException] = asyncio.Queue()
        self.arrived = asyncio.Event()
        #: The client's own marks waiting in the queue (`mark`), by identity: not the server's events.
        self._marks: set[int] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Open the stream (in a background task)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._read(), name=f"events {self.session_id}"
            )

    async def close(self) -> None:
        """Close the stream: the server counts this client as detached."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def next(self, within: float | None = None) -> ServerEvent | None:
        """The next event (None after `within` seconds without one); re-raises a lost stream."""
        try:
            item = await asyncio.wait_for(self.queue.get(), within)
        except TimeoutError:
            return None
        if self.queue.empty():
            self.arrived.clear()
        self._marks.discard(id(item))
        if isinstance(item, BaseException):
            raise item
        return item

    def pending(self) -> bool:
        """Whether events of the server are waiting to be taken (the client's own marks aside: the
        answer to its POST, a Ctrl-C, arriving just behind an event do not make it history)."""
        return self.queue.qsize() > len(self._marks)

    def mark(self, item: ServerEvent) -> None:
        """Queue one of the client's own marks among the events (taken by `next` in order)."""
        self._marks.add(id(item))
        self.queue.put_nowait(item)

    @property
    def stopped(self) -> bool:
        """True once it follows no more: the session ended, or the stream was lost or refused."""
        return self._task is not None and self._task.done()

    async def _read(self) -> None:
        failing_since: float | None = None
        gone_told = False
        loop = asyncio.get_running_loop()
        while True:
            try:
                if gone_told:
                    await self.api.readyz()  # (raises while the server is still gone)
                    gone_told = False
                    self._put(ServerEvent(None, SERVER_BACK, {"url": self.api.base_url}))
                brought = False
                async for event in self.api.events(self.session_id, after=self.position):
                    failing_since = None
                    if event.id is not None:
                        if self.position is not None and position_key(event.id) <= position_key(
                            self.position
                        ):
                            continue
                        self.position = event.id
                    brought = True
                    self._put(event)
                    if event.event == SESSION_END:
                        return  # nothing follows it: reconnecting would wait forever
                # The server closed the stream. One that brought nothing may be the answer for an
                # ended session (204): ask, so its client hears it ended instead of waiting.
                if not brought and await self._has_ended():
                    self._put(ServerEvent(None, SESSION_END, {"reason": "it had ended"}))
                    return
                # Otherwise the server is stopping: try again.
                if failing_since is None:
                    failing_since = loop.time()
            except ServerUnreachable as exc:
                if failing_since is None:
                    failing_since = loop.time()
                moved = self.relocate() if self.relocate is not None else None
                if moved is not None and moved.rstrip("/") != self.api.base_url:
                    self.api.move_to(moved)
                    continue
                if self.relocate is None and loop.time() - failing_since > RECONNECT_FOR:
                    self._put(StreamLost(self.api.base_url, f"the event stream broke: {exc}"))
                    return
                if self.relocate is not None and not gone_told and loop.time() - failing_since > GONE_AFTER:
                    gone_told = True
                    self._put(ServerEvent(None, SERVER_GONE, {"url": self.api.base_url}))
            except ApiError as exc:
                self._put(exc)
                return
            await asyncio.sleep(0.2 if failing_since is None else min(2.0, 0.2 + loop.time() - failing_since))
            lost = failing_since is not None and loop.time() - failing_since > RECONNECT_FOR
            if lost and self.relocate is None:
                self._put(StreamLost(self.api.base_url, "the event stream closed and did not come back"))
                return

    async def _has_ended(self) -> bool:
        try:
            info = await self.api.session(self.session_id)
        except ApiError as exc:
            if exc.status == 404:
                raise  # deleted: its client is told, as a reconnect would tell it
            return False  # (a server on its way out may answer 503: reconnecting finds out)
        return info.get("status") == "ended"

    def _put(self, item: ServerEvent | BaseException) -> None:
        self.queue.put_nowait(item)
        self.arrived.set()
