"""One provider instance (and HTTP connection pool) per distinct model configuration."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from duragent.agents.loader import Agent
from duragent.agents.spec import ModelSpec
from duragent.llm.base import Provider
from duragent.llm.registry import PRESETS, provider_for_model


class ProviderPool:
    """Creates providers on first use and closes them all at the end."""

    def __init__(self, env: Mapping[str, str] | None = None):
        self.env: Mapping[str, str] = os.environ if env is None else env
        self._providers: dict[ModelSpec, Provider] = {}
        #: Per agent: its last `spec.model` and provider (hashing a model's settings costs more
        #: than the rest of finding its provider, and each turn asks).
        self._last: dict[str, tuple[ModelSpec, Provider]] = {}

    def for_agent(self, agent: Agent) -> Provider:
        """The provider for the agent's `spec.model` (shared by agents with the same model settings)."""
        model = agent.spec.model
        last = self._last.get(agent.name)
        if last is not None and last[0] is model:
            return last[1]
        provider = self._providers.get(model)
        if provider is None:
            provider = self._providers[model] = provider_for_model(model, self.env)
        self._last[agent.name] = (model, provider)
        return provider

    async def close(self) -> None:
        """Close every provider's connections."""
        providers, self._providers = list(self._providers.values()), {}
        self._last = {}
        for provider in providers:
            await provider.close()


def provider_env_names(models: Iterable[ModelSpec], also: Iterable[str] = ()) -> set[str]:
    """Environment variables providers read: every preset's key, the keys `models` name, and `also`."""
    names = {preset.api_key_env for preset in PRESETS.values() if preset.api_key_env}
    names.update(model.api_key_env for model in models if model.api_key_env)
    names.update(also)
    return names
