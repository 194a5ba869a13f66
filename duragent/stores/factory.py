"""Turn `services.*` into store instances, one backend per service, mixed freely."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from duragent.config import DuragentConfig
from duragent.errors import ConfigError, DuragentError
from duragent.stores.base import ArtifactStore, ChangeListener, MemoryStore, SessionStore, ignore_changes


@dataclass(frozen=True)
class Stores:
    """The three stores a workspace works through."""

    sessions: SessionStore
    memory: MemoryStore
    artifacts: ArtifactStore

    async def close(self) -> None:
        """Close every store (files, locks, connections)."""
        await self.sessions.close()
        await self.memory.close()
        await self.artifacts.close()


def _unavailable(config: DuragentConfig, service: str, backend: str) -> ConfigError:
    return ConfigError(
        f"services.{service}.backend '{backend}' is not available in this version of Duragent; "
        "use 'filesystem'",
        config.locate(("services", service, "backend")),
    )


def _required(config: DuragentConfig, service: str, key: str, backend: str) -> str:
    """`services.<service>.<key>`, or a ConfigError at that line (or the service's, when absent)."""
    value: str | None = getattr(getattr(config.services, service), key)
    if not value:
        raise ConfigError(
            f"services.{service}.{key} is required with backend '{backend}'",
            config.locate(("services", service, key)),
        )
    return value


def _require_library(module: str, extra: str) -> None:
    """A clear error naming the extra to install when a backend's library is missing."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise DuragentError(f"this backend needs {module}: pip install 'duragent[{extra}]'")


def postgres_url(config: DuragentConfig, service: str) -> str:
    """`services.<service>.url` of a postgres-backed service (ConfigError at its line when unset or
    not a usable PostgreSQL URL: wrong scheme, bad `?schema=`)."""
    from duragent.stores.postgres.pool import parse_postgres_url

    url = _required(config, service, "url", "postgres")
    try:
        parse_postgres_url(url)
    except ConfigError as error:
        # Checked here, where the line is known, not at the first connection of a running worker.
        where = config.locate(("services", service, "url"))
        raise ConfigError(f"services.{service}.url: {error}", where) from error
    return url


def open_session_store(
    config: DuragentConfig,
    *,
    on_change: ChangeListener = ignore_changes,
    redact: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> SessionStore:
    """The session store `services.session` asks for."""
    backend = config.services.session.backend
    if backend == "filesystem":
        from duragent.stores.filesystem.sessions import FilesystemSessionStore

        return FilesystemSessionStore(
            config.service_path("session"), fsync=config.session.fsync, on_change=on_change, redact=redact
        )
    if backend == "postgres":
        url = postgres_url(config, "session")
        _require_library("asyncpg", "postgres")
        from duragent.stores.postgres.sessions import PostgresSessionStore

        return PostgresSessionStore(url, on_change=on_change, redact=redact)
    raise _unavailable(config, "session", backend)


def open_memory_store(
    config: DuragentConfig,
    *,
    on_change: ChangeListener = ignore_changes,
    redact: Callable[[str], str] | None = None,
    before_write: Callable[[Path], object] | None = None,
) -> MemoryStore:
    """The memory store `services.memory` asks for (`before_write`: see FilesystemMemoryStore;
    memory in PostgreSQL has no files)."""
    backend = config.services.memory.backend
    if backend == "filesystem":
        from duragent.stores.filesystem.memory import FilesystemMemoryStore

        return FilesystemMemoryStore(
            config.service_path("memory"), on_change=on_change, redact=redact, before_write=before_write
        )
    if backend == "postgres":
        url = postgres_url(config, "memory")
        _require_library("asyncpg", "postgres")
        from duragent.stores.postgres.memory import PostgresMemoryStore

        return PostgresMemoryStore(url, on_change=on_change, redact=redact)
    raise _unavailable(config, "memory", backend)


def open_artifact_store(
    config: DuragentConfig, *, on_change: ChangeListener = ignore_changes
) -> ArtifactStore:
    """The artifact store `services.artifacts` asks for."""
    backend = config.services.artifacts.backend
    if backend == "filesystem":
        from duragent.stores.filesystem.artifacts import FilesystemArtifactStore

        return FilesystemArtifactStore(config.service_path("artifacts"), on_change=on_change)
    if backend == "s3":
        service = config.services.artifacts
        bucket = _required(config, "artifacts", "bucket", "s3")
        _require_library("aiobotocore", "s3")
        from duragent.stores.s3 import S3ArtifactStore, S3Timeouts

        # Git does not cover S3: on_change is not used.
        return S3ArtifactStore(
            bucket,
            region=service.region,
            prefix=service.prefix or "",
            endpoint_url=service.endpoint_url,
            presign_ttl=service.presign_ttl,
            timeouts=S3Timeouts(
                connect=service.connect_timeout.total_seconds(),
                read=service.read_timeout.total_seconds(),
                max_attempts=service.max_attempts,
            ),
        )
    raise _unavailable(config, "artifacts", backend)
