"""How an MCP server is configured: a command run over stdio, or a Streamable HTTP URL.

The same entry is accepted in agent.yaml (`spec.mcp_servers`, that agent's servers) and in
duragent.yaml (`mcp_servers`, offered to every agent; an agent's own server of the same name
wins)::

    mcp_servers:
      - name: time
        command: uvx
        args: [mcp-server-time]
        env: [TZ]                      # names of variables passed to the server
      - name: docs
        url: https://mcp.example.com/mcp
        headers: {Authorization: "Bearer ${DOCS_TOKEN}"}
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_serializer,
    field_validator,
    model_validator,
)

from duragent.durations import Duration

#: Server names: they prefix tool names (`<server>__<tool>`) and policy patterns (`mcp:<server>:<tool>`).
SERVER_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class McpServerSpec(BaseModel):
    """One MCP server: `command` (stdio) or `url` (Streamable HTTP), never both."""

    model_config = ConfigDict(defer_build=True, extra="ignore", frozen=True, populate_by_name=True)

    name: str = Field(pattern=SERVER_NAME_PATTERN, description="Prefix of its tools: <name>__<tool>.")
    command: str | None = Field(None, min_length=1, description="stdio: the program to run.")
    args: list[str] = Field([], description="stdio: its arguments.")
    env: list[str] = Field(
        [], description="stdio: names of environment variables passed on (besides HOME, PATH, USER...)."
    )
    cwd: str | None = Field(None, description="stdio: working directory (default: the agent's work folder).")
    url: str | None = Field(
        None, description="Streamable HTTP: the server's endpoint, e.g. https://host/mcp."
    )
    headers: dict[str, str] = Field({}, description="Streamable HTTP: headers sent (use ${VAR} for secrets).")
    start_timeout: Duration = Field(
        timedelta(seconds=30), description="Longest wait for the server to start."
    )
    call_timeout: Duration = Field(timedelta(minutes=5), description="Longest wait for one tool call.")

    @field_serializer("headers")
    def _hidden_values(self, headers: dict[str, str]) -> dict[str, str]:
        # Header values are usually credentials (expanded from ${VAR}): a dump shows names only.
        return dict.fromkeys(headers, "<hidden>")

    @field_validator("name", mode="before")
    @classmethod
    def _name_form(cls, value: object) -> object:
        # (said in words before the pattern check would quote the regular expression)
        if isinstance(value, str) and not re.match(SERVER_NAME_PATTERN, value):
            raise ValueError(
                f"{value!r} must be 1 to 32 letters, digits, '-' and '_', starting with a letter or digit"
            )
        return value

    @field_validator("name")
    @classmethod
    def _no_double_underscore(cls, value: str) -> str:
        if "__" in value:
            raise ValueError("must not contain '__' (it separates the server from the tool in tool names)")
        return value

    @field_validator("env")
    @classmethod
    def _variable_names(cls, names: list[str]) -> list[str]:
        for name in names:
            if not _ENV_NAME.match(name):
                raise ValueError(f"{name!r} is not an environment variable name (list names, not values)")
        return names

    @field_validator("start_timeout", "call_timeout")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        # 0s would fail every start (or every call) at once
        if value <= timedelta(0):
            raise ValueError("must be longer than 0s")
        return value

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
        return value

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerSpec:
        if self.command is not None and self.url is not None:
            raise ValueError(f"MCP server {self.name!r} has both `command` and `url`; keep one")
        if self.command is None and self.url is None:
            raise ValueError(f"MCP server {self.name!r} needs `command` (stdio) or `url` (Streamable HTTP)")
        if self.url is not None and (self.args or self.env or self.cwd):
            raise ValueError(
                f"MCP server {self.name!r}: `args`, `env` and `cwd` apply to `command` servers only"
            )
        if self.command is not None and self.headers:
            raise ValueError(f"MCP server {self.name!r}: `headers` apply to `url` servers only")
        return self

    @property
    def transport(self) -> str:
        """`stdio` or `http`."""
        return "stdio" if self.command is not None else "http"

    @property
    def target(self) -> str:
        """What is connected to, for people: the command line, or the URL without any password
        (user info, and the values of its query, where services put tokens: `?token=…`)."""
        if self.url is not None:
            scheme, _, rest = self.url.partition("://")
            authority, slash, path = rest.partition("/")
            path, question, query = path.partition("?")
            if question:
                names = (pair.partition("=")[0] for pair in query.split("&") if pair)
                query = "&".join(f"{name}=…" for name in names)
            return f"{scheme}://{authority.rpartition('@')[2]}{slash}{path}{question}{query}"
        return " ".join([self.command or "", *self.args])


def _unique_names(servers: list[McpServerSpec]) -> list[McpServerSpec]:
    seen: set[str] = set()
    for server in servers:
        if server.name in seen:
            raise ValueError(f"MCP server name {server.name!r} is used twice")
        seen.add(server.name)
    return servers


#: The type of a `mcp_servers` list: `null` is empty, each name once.
McpServers = Annotated[
    list[McpServerSpec],
    BeforeValidator(lambda value: [] if value is None else value),
    AfterValidator(_unique_names),
]
