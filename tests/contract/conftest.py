"""Backends for the contract tests: every store protocol runs the same tests against each backend.

To add a backend (PostgreSQL, S3), add one factory to the matching `*_FACTORIES` dict: an async
context manager that yields a fresh, empty store and cleans up after it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest

from duragent.stores.base import SessionStore

SessionStoreFactory = Callable[[Path], AbstractAsyncContextManager[SessionStore]]


@asynccontextmanager
async def filesystem_session_store(tmp_path: Path) -> AsyncIterator[SessionStore]:
    """The default backend: files under a temporary sessions folder."""
    from duragent.stores.filesystem.sessions import FilesystemSessionStore

    store = FilesystemSessionStore(tmp_path / "sessions", fsync="never")
    try:
        yield store
    finally:
        await store.close()


@asynccontextmanager
async def postgres_session_store(tmp_path: Path) -> AsyncIterator[SessionStore]:
    """PostgreSQL in a throwaway schema (skipped when the test server is unreachable, unless CI)."""
    from duragent.stores.postgres.sessions import PostgresSessionStore
    from duragent.testing.postgres import temporary_schema

    del tmp_path
    async with temporary_schema() as url:
        store = PostgresSessionStore(url)
        try:
            yield store
        finally:
            await store.close()


SESSION_STORE_FACTORIES: dict[str, SessionStoreFactory] = {
    "fs": filesystem_session_store,
    "pg": postgres_session_store,
}


@pytest.fixture(params=sorted(SESSION_STORE_FACTORIES))
async def session_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SessionStore]:
    """A fresh, empty SessionStore of each backend in turn."""
    async with SESSION_STORE_FACTORIES[request.param](tmp_path) as store:
        yield store
