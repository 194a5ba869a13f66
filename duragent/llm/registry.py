"""From a provider name (and agent.yaml's model settings) to a ready provider.

Provider modules are imported only when asked for, so the demo provider never loads aiohttp.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from duragent.llm.errors import MissingApiKey, UnknownProvider, UnusableApiKey

if TYPE_CHECKING:
    from duragent.agents.spec import ModelSpec
    from duragent.llm.base import Provider
    from duragent.llm.http_provider import Timeouts
    from duragent.llm.retry import RetryPolicy

#: Sent to OpenRouter so requests are attributed to Duragent on its dashboards.
OPENROUTER_HEADERS = {"HTTP-Referer": "https://pypi.org/project/duragent/", "X-Title": "Duragent"}


@dataclass(frozen=True, slots=True)
class Preset:
    """Defaults of one provider name: where it lives and which variable holds its key."""

    base_url: str | None
    api_key_env: str | None


PRESETS: dict[str, Preset] = {
    "openai": Preset("https://api.openai.com/v1", "OPENAI_API_KEY"),
    "openrouter": Preset("https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
    "ollama": Preset("http://127.0.0.1:11434/v1", None),
    "anthropic": Preset("https://api.anthropic.com", "ANTHROPIC_API_KEY"),
    "demo": Preset(None, None),
}


def create_provider(
    provider: str,
    *,
    base_url: str | None = None,
    api_key_env: str | None = None,
    env: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    retry: RetryPolicy | None = None,
    timeouts: Timeouts | None = None,
) -> Provider:
    """A provider for `provider` (openai, openrouter, ollama, anthropic, demo).

    The API key is read from `api_key_env` (default: the preset's variable) in `env` (default:
    the process environment). It is required for the provider's own service; with a custom
    `base_url` (vLLM, LM Studio, a proxy) it is sent when set and not required unless
    `api_key_env` was named explicitly.
    """
    if provider not in PRESETS:
        raise UnknownProvider(provider, tuple(PRESETS))
    if provider == "demo":
        from duragent.llm.demo import DemoProvider

        return DemoProvider()
    preset = PRESETS[provider]
    variable = api_key_env or preset.api_key_env
    api_key = read_api_key(env if env is not None else os.environ, variable, provider) if variable else None
    key_required = api_key_env is not None or (preset.api_key_env is not None and base_url is None)
    if variable and key_required and not api_key:
        raise MissingApiKey(provider, variable)
    url = base_url or preset.base_url or ""
    if provider == "anthropic":
        from duragent.llm.anthropic import AnthropicProvider

        return AnthropicProvider(
            api_key, base_url=url, api_key_env=variable, headers=headers, retry=retry, timeouts=timeouts
        )
    from duragent.llm.openai_compat import OpenAICompatProvider

    preset_headers = OPENROUTER_HEADERS if provider == "openrouter" else {}
    return OpenAICompatProvider(
        url,
        api_key,
        provider_name=provider,
        api_key_env=variable,
        headers={**preset_headers, **(headers or {})},
        retry=retry,
        timeouts=timeouts,
        max_tokens_field="max_completion_tokens"
        if provider == "openai" and base_url is None
        else "max_tokens",
    )


def read_api_key(env: Mapping[str, str], variable: str, provider: str) -> str | None:
    """The key in `variable`, without the white space around it (a key read from a file keeps
    the file's line break, which no header may carry); None when unset or blank."""
    key = (env.get(variable) or "").strip()
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in key):
        raise UnusableApiKey(provider, variable)
    return key or None


def provider_for_model(model: ModelSpec, env: Mapping[str, str] | None = None) -> Provider:
    """The provider an agent's `spec.model` asks for."""
    from duragent.llm.http_provider import Timeouts

    timeouts = Timeouts(idle=model.timeout.total_seconds()) if model.timeout is not None else None
    return create_provider(
        model.provider, base_url=model.base_url, api_key_env=model.api_key_env, env=env, timeouts=timeouts
    )
