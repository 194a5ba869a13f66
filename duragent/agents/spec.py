"""The agent.yaml model (`apiVersion: duragent/v1alpha1`, `kind: Agent`).

Two spellings are accepted: the full form with `metadata` and `spec`, and the seed's flat
shorthand (`name`, `description`, `model`, `session`, `tools` at top level), which
`normalise_shorthand` rewrites into the full form before validation.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Literal, cast

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    field_validator,
    model_validator,
)

from duragent.durations import Duration
from duragent.mcp.spec import McpServers

API_VERSION = "duragent/v1alpha1"
NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
#: The shared memory folder (`memory/world/`): no agent may take its name.
RESERVED_AGENT_NAME = "world"
Provider = Literal["openai", "anthropic", "openrouter", "ollama", "demo"]

#: Environment variable holding each provider's API key unless `model.api_key_env` says otherwise.
DEFAULT_API_KEY_ENV: dict[str, str | None] = {
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "openrouter": "OPENROUTER_API_KEY",
    "ollama": None,
    "demo": None,
}

#: Tools an agent can enable by name in `spec.tools` (the executor implements them).
BUILTIN_TOOLS = (
    "bash",
    "read_file",
    "write_file",
    "edit_file",
    "list_files",
    "web_fetch",
    "memory",
    "notify_user",
    "artifact_put",
    "artifact_get",
    "artifact_list",
    "schedule",
    "session",
    "background_process",
    "web_search",
)

_SHORTHAND_METADATA = ("name", "description", "labels", "version")
#: Keys that make a file the full form (any one of them).
FULL_FORM_KEYS = ("apiVersion", "api_version", "kind", "metadata", "spec")


class SpecModel(BaseModel):
    """Base of every agent.yaml section: immutable, unknown keys ignored (and warned about)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def variable_name(value: str | None) -> str | None:
    """`value` if it can name an environment variable; else a ValueError that shows only its first
    four characters (a key pasted in its place must not be echoed into logs and terminals)."""
    if value is not None and not _VARIABLE_NAME.fullmatch(value):
        raise ValueError(
            f"must name an environment variable (letters, digits and _), not hold the key itself "
            f"({value[:4]}…): put the key in the environment, name its variable here, and revoke "
            "the key if this file was committed"
        )
    return value


class ModelSpec(SpecModel):
    """Which language model the agent uses."""

    provider: Provider
    name: str = Field(min_length=1, description="Model name as the provider knows it.")
    base_url: str | None = Field(None, description="Any OpenAI-compatible server (vLLM, LM Studio...).")
    api_key_env: str | None = Field(None, description="Variable holding the API key (default per provider).")
    temperature: float | None = Field(None, ge=0, le=2)
    max_output_tokens: int | None = Field(
        None, ge=1, validation_alias=AliasChoices("max_output_tokens", "max_tokens")
    )
    timeout: Duration | None = Field(
        None,
        description="Longest wait for the model's next bytes, its first token included (default 5m): "
        "longer for a slow local model, shorter to fail fast.",
    )

    @property
    def key_variable(self) -> str | None:
        """The environment variable the API key is read from, if the provider needs one."""
        return self.api_key_env or DEFAULT_API_KEY_ENV[self.provider]

    @field_validator("api_key_env")
    @classmethod
    def _names_a_variable(cls, value: str | None) -> str | None:
        return variable_name(value)

    @field_validator("timeout")
    @classmethod
    def _positive(cls, value: timedelta | None) -> timedelta | None:
        # 0s would fail every model call at once
        if value is not None and value <= timedelta(0):
            raise ValueError("must be longer than 0s")
        return value

    @model_validator(mode="wrap")
    @classmethod
    def _one_output_limit(cls, value: Any, handler: ModelWrapValidatorHandler[ModelSpec]) -> ModelSpec:
        if not (isinstance(value, dict) and "max_tokens" in value and "max_output_tokens" in value):
            return handler(value)
        # (one of the two would be ignored without a word) Said with the fields' own problems,
        # not instead of them: every problem of an agent is reported at once.
        same = ValueError("max_tokens and max_output_tokens are the same setting: keep one")
        conflict: dict[str, Any] = {"type": "value_error", "loc": (), "input": value, "ctx": {"error": same}}
        try:
            handler(value)
        except ValidationError as exc:
            problems: list[Any] = [*exc.errors(), conflict]
            raise ValidationError.from_exception_data(exc.title, problems) from None
        raise ValidationError.from_exception_data(cls.__name__, [cast(Any, conflict)])


class AgentSessionSpec(SpecModel):
    """Per-agent overrides of duragent.yaml's `session` defaults (unset = inherit)."""

    on_disconnect: Literal["continue", "pause"] | None = None
    max_background_runtime: Duration | None = None
    output_buffer_size: int | None = Field(None, ge=0)


class MemorySpec(SpecModel):
    """Memory in the agent's context and the memory tool."""

    enabled: bool = True
    recent_days: int = Field(2, ge=0, description="Daily files in context: today and yesterday.")
    max_tokens: int | None = Field(None, ge=0, description="Share of the context budget for memory.")


class CliToolSpec(SpecModel):
    """A command-line program offered to the model as a tool."""

    name: str = Field(pattern=NAME_PATTERN)
    command: str = Field(min_length=1)
    description: str | None = None


class PolicySpec(SpecModel):
    """Which tool calls run, which are refused, which wait for a person (deny wins)."""

    mode: Literal["allow", "ask", "deny"] = "ask"
    allow: list[str] = []
    ask: list[str] = []
    deny: list[str] = []


class WebSearchSpec(SpecModel):
    """Where the `web_search` tool searches: a SearXNG instance, or the Brave or Tavily API."""

    provider: Literal["searxng", "brave", "tavily"]
    url: str | None = Field(
        None, description="SearXNG: the instance's URL (required). Brave, Tavily: another endpoint."
    )
    api_key_env: str | None = Field(
        None, description="Variable holding the API key (default BRAVE_API_KEY, TAVILY_API_KEY)."
    )
    max_results: int = Field(5, ge=1, le=20, description="Results per search unless the call asks fewer.")
    timeout: Duration = Field(timedelta(seconds=15), description="Longest wait for the search service.")

    @field_validator("api_key_env")
    @classmethod
    def _names_a_variable(cls, value: str | None) -> str | None:
        return variable_name(value)

    @model_validator(mode="after")
    def _searxng_needs_url(self) -> WebSearchSpec:
        if self.provider == "searxng" and not self.url:
            raise ValueError("provider searxng needs url (the SearXNG instance, e.g. http://127.0.0.1:8888)")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, got {self.url!r}")
        return self


class WebFetchSpec(SpecModel):
    """What `web_fetch` may reach besides public internet addresses (it refuses the rest)."""

    allow_networks: list[str] = Field(
        [],
        description=(
            "Networks (`192.168.1.0/24`) or addresses (`10.0.0.5`) web_fetch may fetch although they are "
            "not public: a LAN service, a test server."
        ),
    )

    @field_validator("allow_networks")
    @classmethod
    def _are_networks(cls, value: list[str]) -> list[str]:
        import ipaddress

        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(
                    f"{network!r} is not a network (like 192.168.1.0/24) or an IP address"
                ) from None
        return value


class ToolsSpec(SpecModel):
    """Tools the agent may call; a plain list of names is shorthand for `builtin:`."""

    builtin: list[str] = []
    cli: list[CliToolSpec] = []
    policy: PolicySpec | None = None
    web_search: WebSearchSpec | None = Field(None, description="The search service of `web_search`.")
    web_fetch: WebFetchSpec | None = Field(
        None, description="What `web_fetch` may reach besides public internet addresses."
    )
    env: list[str] = Field(
        [],
        description=(
            "Environment variables bash and cli tools see besides PATH, HOME, LANG, TERM and TZ "
            "(secrets included only when listed here)."
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        builtin: list[Any] = []
        cli: list[Any] = []
        options: dict[str, Any] = {}
        for item in value:
            if isinstance(item, dict) and item.get("type") == "cli":
                cli.append({k: v for k, v in item.items() if k != "type"})
            elif isinstance(item, dict) and "name" in item:
                builtin.append(item["name"])
                if item["name"] in ("web_search", "web_fetch") and len(item) > 1:
                    # `- {name: web_search, provider: searxng, url: ...}`: the tool with its settings
                    options[item["name"]] = {k: v for k, v in item.items() if k != "name"}
            else:
                builtin.append(item)
        return {"builtin": builtin, "cli": cli, **options}


class ContextSpec(SpecModel):
    """The context window budget."""

    max_tokens: int | None = Field(None, ge=256, description="Default: the model's known window.")


AccessPolicy = Literal["open", "disabled", "allowlist"]


class DmAccessSpec(SpecModel):
    """Who may talk to the agent in direct messages on chat platforms (nobody until listed: a bot
    is found by strangers, and whoever starts a turn may approve its commands)."""

    policy: AccessPolicy = Field("allowlist", description="open, disabled, or allowlist of sender ids.")
    allowlist: list[str] = Field([], description="Sender ids; a trailing `*` matches a prefix.")


class GroupAccessSpec(SpecModel):
    """In which group chats the agent takes part (none until listed), and when it answers there."""

    policy: AccessPolicy = Field("allowlist", description="open, disabled, or allowlist of chats.")
    allowlist: list[str] = Field(
        [], description="Chat ids or `<gateway>:<chat_id>`; a trailing `*` matches a prefix."
    )
    activation: Literal["mention", "always"] = Field(
        "mention", description="mention: answer only when mentioned or replied to."
    )


class AccessSpec(SpecModel):
    """Access control and pacing for messages arriving through gateway plugins."""

    dm: DmAccessSpec = DmAccessSpec()
    groups: GroupAccessSpec = GroupAccessSpec()
    debounce: Duration = Field(
        timedelta(milliseconds=1500), description="Rapid messages from one sender merge into one turn."
    )


class AgentSpec(SpecModel):
    """What the agent is: model, prompts, session behaviour, memory and tools."""

    model: ModelSpec
    soul: str | None = Field(None, description="Path relative to the agent folder, or inline text.")
    system_prompt: str | None = Field(None, description="Path relative to the agent folder, or inline text.")
    instructions: str | None = Field(None, description="Path relative to the agent folder, or inline text.")
    session: AgentSessionSpec = AgentSessionSpec()
    memory: MemorySpec | None = Field(None, description="Present (or true) to give the agent memory.")
    tools: ToolsSpec = ToolsSpec()
    skills_dir: str | None = None
    context: ContextSpec = ContextSpec()
    access: AccessSpec = AccessSpec()
    mcp_servers: McpServers = Field([], description="MCP servers whose tools this agent gets (docs/mcp.md).")

    @model_validator(mode="before")
    @classmethod
    def _memory_flag(cls, value: Any) -> Any:
        if isinstance(value, dict) and isinstance(value.get("memory"), bool):
            value = dict(value)
            value["memory"] = {"enabled": value["memory"]}
        return value


class AgentMetadata(SpecModel):
    """Name and labels of an agent."""

    name: str = Field(pattern=NAME_PATTERN, description="Letters, digits, '-' and '_'; not `world`.")
    description: str | None = None
    version: str | None = None
    labels: dict[str, str] = {}

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value == RESERVED_AGENT_NAME:
            raise ValueError(f"{value!r} is the shared memory folder's name; give the agent another")
        return value


class AgentDocument(SpecModel):
    """A whole agent.yaml."""

    api_version: Literal["duragent/v1alpha1"] = Field("duragent/v1alpha1", alias="apiVersion")
    kind: Literal["Agent"] = "Agent"
    metadata: AgentMetadata
    spec: AgentSpec


def is_shorthand(data: Any) -> bool:
    """True for the seed's flat form (`name:` and `model:` at top level, no `spec:`)."""
    return isinstance(data, dict) and not any(key in data for key in FULL_FORM_KEYS)


def normalise_shorthand(data: dict[str, Any]) -> dict[str, Any]:
    """Rewrite the flat shorthand into the full `apiVersion/kind/metadata/spec` form."""
    metadata = {k: data[k] for k in _SHORTHAND_METADATA if k in data}
    spec = {k: v for k, v in data.items() if k not in _SHORTHAND_METADATA}
    return {"apiVersion": API_VERSION, "kind": "Agent", "metadata": metadata, "spec": spec}


def check_new_agent_name(name: str) -> str:
    """`name` if an agent may be made with it; InvalidName (a usage error) otherwise."""
    from duragent.errors import InvalidName
    from duragent.ids import check_name

    check_name(name, "agent name")
    if name == RESERVED_AGENT_NAME:
        raise InvalidName(f"agent name {name!r} is the shared memory folder's; choose another")
    return name
