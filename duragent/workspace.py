"""Workspace: the data directory opened for work — configuration, git, stores and agents.

The composition root of the library: commands and the server open one Workspace and reach
every resource through it, so each resource has exactly one owner and one place it is closed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cached_property
from types import TracebackType
from typing import TYPE_CHECKING

from duragent.config import DuragentConfig
from duragent.errors import NotFound
from duragent.stores.base import Change

if TYPE_CHECKING:
    from duragent.agents.catalog import AgentCatalog
    from duragent.secrets import SecretGuard
    from duragent.stores.factory import Stores
    from duragent.vcs.committer import Committer


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
        if not self.config.git.enabled:
            return None
        from duragent.vcs.committer import Committer
        from duragent.vcs.repo import GitRepo

        repo = GitRepo.open_or_init(self.config.data_path)
        committer = Committer(
            repo,
            debounce=self.config.git.commit_debounce.total_seconds(),
            max_delay=self.config.git.max_commit_delay.total_seconds(),
            author=self.config.git.author,
            guard=self.guard,
        )
        committer.start()
        return committer

    def record_change(self, change: Change) -> None:
        """The ChangeListener every store reports to: hands the change to the committer."""
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
        if self._stores is not None:
            await self._stores.close()
            self._stores = None
        if "committer" in self.__dict__ and self.committer is not None:
            self.committer.close()

    async def __aenter__(self) -> Workspace:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
