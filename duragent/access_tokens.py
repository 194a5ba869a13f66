"""The workspace's API and admin tokens: `<data_dir>/run/tokens.json`, read by server and clients.

A server with no token in duragent.yaml requires the tokens of this file; `duragent init` and the
first server start in a workspace without one create it (mode 0600, under the git-ignored
`run/`). Every CLI client, test harness and `duragent.testing` helper reads the tokens here, so
they send what the server of the same workspace expects. `server.api_token` / `admin.token` in
duragent.yaml win over the file; `DURAGENT_API_TOKEN` / `DURAGENT_ADMIN_TOKEN` give a client the
tokens of a server it cannot read the file of.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from duragent.errors import ConfigError
from duragent.private_data_dir import make_data_dir

if TYPE_CHECKING:
    from duragent.config import DuragentConfig

TOKENS_FILE = Path("run") / "tokens.json"
API_TOKEN_ENV = "DURAGENT_API_TOKEN"
ADMIN_TOKEN_ENV = "DURAGENT_ADMIN_TOKEN"


class AccessTokens(NamedTuple):
    """The bearer tokens guarding `/api/v1` (api) and `/api/admin/v1` (admin)."""

    api: str
    admin: str


def tokens_path(data_path: Path) -> Path:
    """Where the workspace's tokens file is."""
    return data_path / TOKENS_FILE


def read_tokens(data_path: Path) -> AccessTokens | None:
    """The tokens of the workspace at `data_path`, or None when it has no (readable) tokens file."""
    path = tokens_path(data_path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except PermissionError:
        return None
    except NotADirectoryError:
        # `run` itself is a file: deleting tokens.json, as the message below says, cannot help
        in_the_way = next((folder for folder in path.parents if folder.is_file()), path.parent)
        raise ConfigError(
            f"{in_the_way} is a file, not a folder: Duragent keeps its tokens and other run-time "
            "files there; move or rename the file, then start again"
        ) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a tokens file ({exc}); delete it to get new tokens") from None
    api, admin = (
        record.get(key) if isinstance(record, dict) else None for key in ("api_token", "admin_token")
    )
    if not (isinstance(api, str) and api and isinstance(admin, str) and admin):
        raise ConfigError(f"{path}: needs api_token and admin_token; delete it to get new tokens")
    return AccessTokens(api=api, admin=admin)


def ensure_tokens(data_path: Path) -> AccessTokens:
    """The workspace's tokens, made (random, mode 0600) when it has none yet.

    Creation is atomic and exclusive: servers starting together in one workspace end up with the
    same tokens, and no reader ever sees a half-written file.
    """
    existing = read_tokens(data_path)
    if existing is not None:
        return existing
    path = tokens_path(data_path)
    make_data_dir(data_path)  # (a server's first start in a new data directory makes it here)
    path.parent.mkdir(parents=True, exist_ok=True)
    ignore = path.parent / ".gitignore"
    if not ignore.exists():
        # run/ ignores itself, whatever the data repository's own .gitignore says.
        ignore.write_text("*\n", encoding="utf-8")
    import secrets  # (only here: reading tokens, as every client does, needs no random numbers)

    made = AccessTokens(api=secrets.token_urlsafe(32), admin=secrets.token_urlsafe(32))
    text = json.dumps({"api_token": made.api, "admin_token": made.admin}, indent=2) + "\n"
    temporary = path.with_name(f".tokens.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):
            # link() never replaces: if another process won the race, its tokens stand.
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    winner = read_tokens(data_path)
    assert winner is not None
    return winner


def server_tokens(config: DuragentConfig) -> AccessTokens:
    """What a server of `config` requires: duragent.yaml's tokens, else the workspace's file."""
    api, admin = config.server.api_token or None, config.admin.token or None
    if api and admin:
        return AccessTokens(api=api, admin=admin)
    stored = ensure_tokens(config.data_path)
    return AccessTokens(api=api or stored.api, admin=admin or stored.admin)


def client_tokens(config: DuragentConfig | None, env: Mapping[str, str] | None = None) -> AccessTokens | None:
    """What a client of the workspace's server sends: duragent.yaml, the environment, the file.

    None when there is no configuration to find a workspace in and no token in the environment.
    """
    env = os.environ if env is None else env
    stored = read_tokens(config.data_path) if config is not None else None
    api = (config.server.api_token if config else None) or env.get(API_TOKEN_ENV) or (stored and stored.api)
    admin = (config.admin.token if config else None) or env.get(ADMIN_TOKEN_ENV) or (stored and stored.admin)
    if not api and not admin:
        return None
    return AccessTokens(api=api or "", admin=admin or "")


def auth_headers(config: DuragentConfig | None, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """`Authorization` (API token) and `X-Duragent-Admin-Token` headers for a client of `config`."""
    tokens = client_tokens(config, env)
    return {} if tokens is None else headers_for(tokens)


def headers_for(tokens: AccessTokens) -> dict[str, str]:
    """The headers carrying `tokens`: the API token as bearer, the admin token beside it."""
    headers = {}
    if tokens.api:
        headers["Authorization"] = f"Bearer {tokens.api}"
    if tokens.admin:
        headers["X-Duragent-Admin-Token"] = tokens.admin
    return headers
