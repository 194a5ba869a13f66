"""Stateless workers: N `duragent serve` processes sharing one PostgreSQL database.

- `ownership`: which worker runs which session (advisory locks on a dedicated connection).
- `events`: a session's stream on any worker (LISTEN/NOTIFY plus the events table).
- `agents`: agents deployed through the admin API, shared through PostgreSQL.
- `requests`: requests for a session another worker runs, handed to that worker.
- `turns`: a streamed message's turn run by another worker, streamed on this one.
- `node`: one worker's membership: connections, notifications, the failover scan, reconnecting.

Used when `services.session.backend` is `postgres` (see docs/scaling-out.md). Needs asyncpg.
"""
