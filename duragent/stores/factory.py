"""Turn `services.*` into store instances, one backend per service, mixed freely."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from duragent.config import DuragentConfig
from duragent.errors import ConfigError
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
    raise _unavailable(config, "session", backend)


def open_memory_store(
    config: DuragentConfig,
    *,
    on_change: ChangeListener = ignore_changes,
    redact: Callable[[str], str] | None = None,
) -> MemoryStore:
    """The memory store `services.memory` asks for."""
    backend = config.services.memory.backend
    if backend == "filesystem":
        from duragent.stores.filesystem.memory import FilesystemMemoryStore

        return FilesystemMemoryStore(config.service_path("memory"), on_change=on_change, redact=redact)
    raise _unavailable(config, "memory", backend)


def open_artifact_store(
    config: DuragentConfig, *, on_change: ChangeListener = ignore_changes
) -> ArtifactStore:
    """The artifact store `services.artifacts` asks for."""
    backend = config.services.artifacts.backend
    if backend == "filesystem":
        from duragent.stores.filesystem.artifacts import FilesystemArtifactStore

        return FilesystemArtifactStore(config.service_path("artifacts"), on_change=on_change)
    raise _unavailable(config, "artifacts", backend)
