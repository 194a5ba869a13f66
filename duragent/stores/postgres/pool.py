"""Connection pools for the PostgreSQL stores: which schema, and a pool opened on first use.

Every Duragent table lives in one schema, `duragent` unless the URL says otherwise with a
`schema` query parameter (`postgresql://host/db?schema=team_a`). The schema keeps Duragent's
`sessions` and `events` tables away from an application's own tables in a shared database,
and lets several test runs or teams share one server. The parameter is ours: it is removed
from the URL before asyncpg sees it, and becomes the connections' `search_path`.

Queries go through asyncpg's per-connection statement cache, so each statement is prepared
once per connection and then only bound and executed.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from duragent.errors import ConfigError, DuragentError, ServiceUnavailable

if TYPE_CHECKING:
    import asyncpg

DEFAULT_SCHEMA = "duragent"
#: Seconds a query (and the cancelling of one its caller gave up on) may take. A database gone
#: silent (a network partition, a failover that drops the old address's packets) would otherwise
#: hold the query, and the pool connection it uses, until the operating system gives up on the
#: TCP connection, a quarter of an hour later.
QUERY_TIMEOUT = 30.0
#: Seconds opening a connection may take.
CONNECT_TIMEOUT = 10.0
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class PostgresUnavailable(ServiceUnavailable):
    """The PostgreSQL server could not be reached or refused the connection."""


@dataclass(frozen=True)
class PostgresTarget:
    """A connection URL as asyncpg takes it, and the schema Duragent's tables live in."""

    dsn: str
    schema: str

    def describe(self) -> str:
        """The URL without its password, for messages and `db status`."""
        parts = urlsplit(self.dsn)
        user = f"{parts.username}@" if parts.username else ""
        return f"{parts.scheme}://{user}{_hosts(parts.netloc)}{parts.path} (schema {self.schema})"


def _hosts(netloc: str) -> str:
    """The `host[:port][,host[:port]...]` part of a URL's netloc (asyncpg takes several hosts)."""
    return netloc.rpartition("@")[2]


def _check_userinfo(url: str, netloc: str) -> None:
    """ConfigError when a `#`, `/` or `?` in the user name or password ended the host part early:
    what is left of the password would be read (and reported) as a host and port."""
    at, equals = url.find("@"), url.find("=")
    if "@" in netloc or at == -1:
        return
    # An "@" after a "=" may be a query's ("?sslrootcert=/a@b"), but a password cut short leaves
    # its first part where the port goes ("user:Qm9v/Zm=@host": netloc "user:Qm9v").
    _, colon, port = netloc.rpartition(":")
    cut_short = bool(colon) and not netloc.endswith("]") and not port.isdigit()
    if equals == -1 or at < equals or cut_short:
        raise ConfigError(
            "the user name or password holds '#', '/' or '?', which end the host part of a URL:"
            " percent-encode them (%23, %2F, %3F; and '@' as %40)"
        )


def _check_ports(netloc: str) -> None:
    """ConfigError naming the host whose port is not a number from 1 to 65535."""
    addresses = _hosts(netloc).split(",")
    for number, address in enumerate(addresses, start=1):
        # An IPv6 address is bracketed ("[::1]:5432"): its own colons are not a port's.
        host, colon, port = address.rpartition(":")
        if not colon or not port or ("[" in address and not host.endswith("]")):
            continue
        if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
            # Neither the port nor the host quoted: either may be a password cut short.
            which = f"host {number} of {len(addresses)}" if len(addresses) > 1 else "the host"
            raise ConfigError(f"the port of {which} is not a number from 1 to 65535")


def check_schema_name(schema: str) -> str:
    """Return `schema` if it is a plain lower-case identifier (it is spliced into DDL), else ConfigError."""
    if not _SCHEMA_NAME.fullmatch(schema):
        raise ConfigError(
            f"invalid PostgreSQL schema {schema!r}: use lower-case letters, digits and '_' "
            "(at most 63, not starting with a digit)"
        )
    return schema


def parse_postgres_url(url: str, schema: str | None = None) -> PostgresTarget:
    """Split our `schema` query parameter off a postgres URL; `schema` given here wins over the URL's."""
    try:
        parts = urlsplit(url)
    except ValueError as error:
        # Never the URL itself: it may hold a password.
        raise ConfigError(f"not a valid URL: {error}") from error
    if parts.scheme not in ("postgres", "postgresql"):
        # Never the URL itself: it may hold a password.
        found = f"not {parts.scheme!r}" if parts.scheme else "and this one has no scheme"
        raise ConfigError(f"a PostgreSQL URL starts with postgresql:// or postgres://, {found}")
    _check_userinfo(url, parts.netloc)
    _check_ports(parts.netloc)
    query = parse_qsl(parts.query, keep_blank_values=True)
    from_url = [value for key, value in query if key == "schema"]
    if len(from_url) > 1:
        # Which one was meant is a guess either way (and the worker would quietly use another schema).
        raise ConfigError(f"the URL's query option 'schema' is given {len(from_url)} times: give it once")
    rest = [(key, value) for key, value in query if key != "schema"]
    chosen = schema or (from_url[0] if from_url else DEFAULT_SCHEMA)
    dsn = urlunsplit(parts._replace(query=urlencode(rest)))
    return PostgresTarget(dsn=dsn, schema=check_schema_name(chosen))


def import_asyncpg() -> Any:
    """asyncpg, or a message naming the extra to install."""
    try:
        import asyncpg
    except ImportError as error:
        raise DuragentError(
            "the PostgreSQL backend needs asyncpg: pip install 'duragent[postgres]'"
        ) from error
    return asyncpg


async def create_pool(
    target: PostgresTarget,
    *,
    min_size: int = 1,
    max_size: int = 10,
    query_timeout: float = QUERY_TIMEOUT,
) -> asyncpg.Pool:
    """An asyncpg pool whose connections use the target's schema; PostgresUnavailable when unreachable.

    `min_size` connections are opened now, so a wrong URL or a database that is down fails here.
    They are not kept open: a connection that drops is opened again by the next query needing one.
    A query still waiting for the server after `query_timeout` seconds raises TimeoutError and
    its connection is closed.
    """
    driver = import_asyncpg()
    try:
        # min_size=0: asyncpg 0.32 would otherwise reopen dropped connections in the background and
        # log a traceback for every failed try, for every pool, while the database is down.
        pool: asyncpg.Pool = await driver.create_pool(
            target.dsn,
            min_size=0,
            max_size=max_size,
            # (asyncpg bounds the cancelling of a query by this too: see QUERY_TIMEOUT)
            command_timeout=query_timeout,
            timeout=CONNECT_TIMEOUT,
            server_settings={"search_path": target.schema, "application_name": "duragent"},
        )
    except (OSError, driver.PostgresError, driver.InterfaceError) as error:
        raise PostgresUnavailable(f"cannot connect to PostgreSQL at {target.describe()}: {error}") from error
    try:
        async with contextlib.AsyncExitStack() as opened:
            for _ in range(min(min_size, max_size)):
                await opened.enter_async_context(pool.acquire())
    except (OSError, driver.PostgresError, driver.InterfaceError) as error:
        await pool.close()
        raise PostgresUnavailable(f"cannot connect to PostgreSQL at {target.describe()}: {error}") from error
    return pool


class LazyPool:
    """A pool opened (and the schema migrated) on first use, so stores can be built synchronously.

    Given an existing `pool`, it is used as is and never closed here: its owner closes it; its
    connections must already use `schema` as their search_path (see `create_pool`).
    """

    def __init__(
        self,
        target: PostgresTarget | None,
        pool: asyncpg.Pool | None = None,
        *,
        schema: str | None = None,
        migrate: bool = True,
        min_size: int = 1,
        max_size: int = 10,
        query_timeout: float = QUERY_TIMEOUT,
    ):
        if target is None and pool is None:
            raise ValueError("a PostgreSQL store needs a url or a pool")
        self.target = target
        self._schema = check_schema_name(schema or (target.schema if target else DEFAULT_SCHEMA))
        self._pool = pool
        self._owned = pool is None
        self._migrate = migrate
        self._ready = False
        self._sizes = (min_size, max_size)
        self._query_timeout = query_timeout
        self._opening = asyncio.Lock()

    @property
    def schema(self) -> str:
        """The schema the tables are in."""
        return self._schema

    async def get(self) -> asyncpg.Pool:
        """The pool, opened and migrated the first time."""
        if self._ready and self._pool is not None:
            return self._pool
        async with self._opening:
            if self._pool is None:
                assert self.target is not None  # checked in __init__
                self._pool = await create_pool(
                    self.target,
                    min_size=self._sizes[0],
                    max_size=self._sizes[1],
                    query_timeout=self._query_timeout,
                )
            if not self._ready:
                if self._migrate:
                    from duragent.stores.postgres.migrations import ensure_schema

                    await ensure_schema(self._pool, self.schema)
                self._ready = True
        return self._pool

    async def close(self) -> None:
        """Close the pool if this object opened it."""
        pool, self._pool, self._ready = self._pool, None, False
        if pool is not None and self._owned:
            await pool.close()
