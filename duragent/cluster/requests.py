"""Requests for a session another worker runs, served by that worker: the `session_requests` table.

A turn waiting for a person's approval keeps its session on its worker (the owner) for as long
as the person takes; so does a long turn a person wants to stop. Behind a load balancer, the
approval or the cancel may reach any worker. That worker (the asker) cannot take the session
over, so it hands the request to the owner:

1. The asker writes a row (session, action, body) and sends `{"q": id, "s": session}` by NOTIFY.
2. The worker that owns the session takes the row (`taken_by`, and the pid of its lock
   connection's backend; the body is cleared), serves the request as if it had reached it,
   writes the answer its client gets into the row and sends `{"a": id}`.
3. The asker reads the answer (on that notification, or by looking every second), deletes the
   row and answers its client with it.

A request served for long (a streamed turn) may tell its asker how it goes before its answer:
the owner's `tell` writes what it has told so far into the row's body (cleared when taken, so
free) and notifies `{"a": id}`; the asker's `on_progress` gets it each time it changes.

A row nobody takes within `TAKE_WITHIN` seconds means the session changed hands meanwhile: the
asker deletes it and tries again (`ask` returns None). A taker whose lock connection's backend is
gone before it answered has stopped: `OwnerStopped`, since what it did before is unknown (a
message may be queued there). An asker that gives up (its client hung up) deletes its row and
sends `{"x": id}`: the owner stops serving it. Rows an asker left when it died are deleted when
a worker starts, a day later.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from duragent.errors import DuragentError

if TYPE_CHECKING:
    import asyncpg

log = logging.getLogger(__name__)

#: What an owner answers: JSON-ready, opaque here (the server turns it into an HTTP response).
Answer = dict[str, Any]
#: Tells the asker how a request goes before its answer: what was told so far, merged (JSON-ready).
Tell = Callable[[dict[str, Any]], Awaitable[None]]
#: Serves one request on the owner: (session id, action, body, tell) -> the answer.
RequestHandler = Callable[[str, str, dict[str, Any], Tell], Awaitable[Answer]]
#: Hears what the owner told so far (all of it, each time something is added).
ProgressListener = Callable[[dict[str, Any]], None]

#: How long an asker waits for the owner to take its request before it looks for the owner again.
TAKE_WITHIN = 2.0
#: How often an asker looks at its row when no notification came.
LOOK_EVERY = 1.0

_INSERT = """
INSERT INTO session_requests (session_id, action, body, asked_by) VALUES ($1, $2, $3::json, $4)
RETURNING id
"""
#: Taking a request clears its body: a message stays in the table no longer than it takes to take it.
_TAKE = """
UPDATE session_requests AS r SET taken_by = $2, taker_pid = $3, body = '{}'
FROM (SELECT id, body FROM session_requests WHERE id = $1 AND taken_by IS NULL FOR UPDATE) AS asked
WHERE r.id = asked.id
RETURNING r.session_id, r.action, asked.body::text AS body
"""
_LOOK = """
SELECT taken_by, answer::text AS answer, body::text AS told,
       EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = taker_pid) AS taker_alive
FROM session_requests WHERE id = $1
"""
_TELL = "UPDATE session_requests SET body = $2::json WHERE id = $1 AND answer IS NULL"


class OwnerStopped(DuragentError):
    """The worker serving a request for its session stopped before it answered."""

    def __init__(self, session_id: str):
        super().__init__(
            f"the worker running session {session_id} stopped while serving this request: see what "
            f"the session did (GET /api/v1/sessions/{session_id}/messages) before sending it again"
        )
        self.session_id = session_id


class OwnerRequests:
    """One worker's side of `session_requests`: it asks owners, and serves what others ask of it."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        channel: str,
        *,
        worker: str,
        owns: Callable[[str], bool],
        backend_pid: int,
    ):
        self._pool = pool
        self.channel = channel
        self.worker = worker
        self._owns = owns
        self._backend_pid = backend_pid
        self._handler: RequestHandler | None = None
        #: Requests this worker asked, by id: woken when their answer is written.
        self._asked: dict[int, asyncio.Event] = {}
        #: Requests this worker serves, by id (cancelled when their asker gives up).
        self._serving: dict[int, asyncio.Task[None]] = {}

    def serve(self, handler: RequestHandler) -> None:
        """Serve requests for the sessions this worker owns with `handler`."""
        self._handler = handler

    def reconnected(self, backend_pid: int) -> None:
        """The lock connection was opened again: askers look for this backend to know it runs."""
        self._backend_pid = backend_pid

    async def forget_abandoned(self) -> None:
        """Delete rows an asker that died left behind (a day old)."""
        await self._pool.execute("DELETE FROM session_requests WHERE asked_at < now() - interval '1 day'")

    # --- asking ---------------------------------------------------------------------------------

    async def ask(
        self,
        session_id: str,
        action: str,
        body: dict[str, Any],
        on_progress: ProgressListener | None = None,
    ) -> Answer | None:
        """Have the worker that owns `session_id` serve `action`; its answer.

        None when no worker took the request within TAKE_WITHIN seconds (the session changed
        hands: look for its owner again). OwnerStopped when the one that took it stopped first.
        `on_progress` hears what the owner tells before it answers (see the module docstring).
        """
        request_id = int(
            await self._pool.fetchval(_INSERT, session_id, action, json.dumps(body), self.worker)
        )
        answered = self._asked[request_id] = asyncio.Event()
        gave_up = True
        try:
            await self._notify({"q": request_id, "s": session_id})
            answer = await self._answer(request_id, session_id, answered, on_progress)
            gave_up = False
            return answer
        finally:
            del self._asked[request_id]
            # (also when cancelled: the row must not stay, and its owner may stop serving it)
            await self._pool.execute("DELETE FROM session_requests WHERE id = $1", request_id)
            if gave_up:
                await self._notify({"x": request_id})

    async def _answer(
        self,
        request_id: int,
        session_id: str,
        answered: asyncio.Event,
        on_progress: ProgressListener | None,
    ) -> Answer | None:
        take_by = time.monotonic() + TAKE_WITHIN
        told = ""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(answered.wait(), LOOK_EVERY)
            answered.clear()  # (a notification from now on wakes the next wait)
            row = await self._pool.fetchrow(_LOOK, request_id)
            if row is None:
                raise OwnerStopped(session_id)  # (deleted as abandoned: a day without an answer)
            if row["taken_by"] is not None and on_progress is not None and row["told"] not in ("{}", told):
                told = row["told"]
                on_progress(json.loads(told))
            if row["answer"] is not None:
                answer: Answer = json.loads(row["answer"])
                return answer
            if row["taken_by"] is None:
                if time.monotonic() < take_by:
                    continue
                withdrawn = await self._pool.fetchval(
                    "DELETE FROM session_requests WHERE id = $1 AND taken_by IS NULL RETURNING true",
                    request_id,
                )
                if withdrawn:
                    return None
            elif not row["taker_alive"]:
                raise OwnerStopped(session_id)

    # --- serving --------------------------------------------------------------------------------

    def deliver(self, payload: str) -> None:
        """The LISTEN callback: a request for a session (served if this worker owns it), an
        answer this worker waits for, or an asker giving up."""
        try:
            message = json.loads(payload)
            if "q" in message:
                if self._handler is not None and self._owns(str(message["s"])):
                    self._start_serving(int(message["q"]))
            elif "a" in message:
                waiting = self._asked.get(int(message["a"]))
                if waiting is not None:
                    waiting.set()
            elif "x" in message:
                serving = self._serving.get(int(message["x"]))
                if serving is not None:
                    serving.cancel()
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("ignoring a malformed session request notification: %.200s", payload)

    def _start_serving(self, request_id: int) -> None:
        if request_id in self._serving:
            return
        task = asyncio.get_running_loop().create_task(self._serve(request_id), name=f"request {request_id}")
        self._serving[request_id] = task
        task.add_done_callback(lambda _: self._serving.pop(request_id, None))

    async def _serve(self, request_id: int) -> None:
        handler = self._handler
        assert handler is not None  # checked before starting
        try:
            row = await self._pool.fetchrow(_TAKE, request_id, self.worker, self._backend_pid)
        except Exception:  # (the database went away, the pool is closing): its asker looks again
            log.exception("could not take request %d of another worker", request_id)
            return
        if row is None:
            return  # taken by another worker, or withdrawn
        session_id, action = str(row["session_id"]), str(row["action"])
        told: dict[str, Any] = {}

        async def tell(update: dict[str, Any]) -> None:
            told.update(update)
            await self._pool.execute(_TELL, request_id, json.dumps(told))
            await self._notify({"a": request_id})

        try:
            answer = await handler(session_id, action, json.loads(row["body"]), tell)
        except asyncio.CancelledError:
            return  # its asker gave up (and deleted the row), or this worker stops
        except Exception:
            log.exception("session %s: serving %r for another worker failed", session_id, action)
            answer = {"error": f"serving the request failed on worker {self.worker} (see its log)"}
        try:
            await self._pool.execute(
                "UPDATE session_requests SET answer = $2::json, answered_at = now() WHERE id = $1",
                request_id,
                json.dumps(answer),
            )
            await self._notify({"a": request_id})
        except Exception:  # its asker hears that this worker stopped serving it (`OwnerStopped`)
            log.exception("session %s: could not answer %r for another worker", session_id, action)

    async def _notify(self, message: dict[str, Any]) -> None:
        await self._pool.execute("SELECT pg_notify($1, $2)", self.channel, json.dumps(message))

    async def close(self) -> None:
        """Stop serving requests (their askers hear that this worker stopped)."""
        for task in list(self._serving.values()):
            task.cancel()
        if self._serving:
            await asyncio.gather(*self._serving.values(), return_exceptions=True)
