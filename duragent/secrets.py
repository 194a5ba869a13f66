"""The secret guard: keeps API keys, tokens and configured secrets out of files and git.

Two sources of secrets are recognised: the values of environment variables the
configuration references as `${NAME}` (plus any variable whose name looks secret, such
as `OPENAI_API_KEY`), and strings shaped like well-known keys and bot tokens. Every
match is replaced with `[REDACTED:NAME]`. All of them are compiled into one regular
expression, because the guard runs on every event a session stores.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from duragent.errors import ConfigError

if TYPE_CHECKING:
    from duragent.access_tokens import AccessTokens
    from duragent.config import DuragentConfig

#: Values shorter than this are too common to be redacted safely ("true", "8080", "admin").
MIN_SECRET_LENGTH = 8

#: Key and token shapes, by the name shown in `[REDACTED:NAME]`. The look-behinds keep a
#: pattern from starting inside a longer word ("risk-assessment-..." is not an `sk-` key).
#: A URL-encoded `=` (`?key%3Dsk-...`) ends a word too, though it ends in a letter.
_AFTER_ENCODED = r"(?<=%3D)|(?<=%3d)"
TOKEN_PATTERNS: dict[str, str] = {
    # Vendor-prefixed keys, and unhyphenated `sk-` + 32 or more letters and digits (what OpenAI's
    # keys look like), are distinctive enough to be found glued to any word; a hyphenated `sk-`
    # word ("risk-assessment-...") only where a word starts.
    "API_KEY": rf"(?:sk-(?:proj|ant|svcacct|admin)-[A-Za-z0-9_-]{{16,}}|sk-[A-Za-z0-9]{{32,}}(?![A-Za-z0-9])"
    rf"|(?:(?<![A-Za-z0-9_-])|{_AFTER_ENCODED})sk-[A-Za-z0-9_-]{{16,}})",
    "SLACK_TOKEN": rf"(?:xox[abposr]-\d{{6,}}-[A-Za-z0-9-]{{8,}}"
    rf"|(?:(?<![A-Za-z0-9_-])|{_AFTER_ENCODED})xox[abposr]-[A-Za-z0-9-]{{10,}})",
    # A bot token also inside Bot API URLs (`/bot123456:AA.../getMe`) and after `=`/`%3D`.
    "TELEGRAM_TOKEN": r"(?<!\d)\d{6,}:[A-Za-z0-9_-]{30,}",
    "AWS_ACCESS_KEY": rf"(?:(?<![0-9A-Z])|{_AFTER_ENCODED})AKIA[0-9A-Z]{{16}}(?![0-9A-Z])",
    "GITHUB_TOKEN": r"(?:ghp_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{22,})",
}

#: Environment variables whose values are never secret even when the configuration uses them
#: (`data_dir: ${HOME}/agents` must not redact every path under the home directory).
NOT_SECRET_ENV = frozenset(
    {"HOME", "USER", "LOGNAME", "PATH", "PWD", "SHELL", "TMPDIR", "TEMP", "TMP", "LANG", "TERM", "HOSTNAME"}
)

#: Names that are secret by convention whatever their value.
_CERTAINLY_SECRET_NAME = re.compile(
    r"(?:^|_)(?:API_KEY|TOKEN)$|(?:^|_)SECRET(?:$|_)|PASSWORD|PASSWD", re.IGNORECASE
)
#: A name that only ends in KEY (`PRIMARY_KEY=created_at`) counts when its value looks like a key
#: (`_looks_like_a_key`).
_KEY_NAME = re.compile(r"(?:^|_)KEY$", re.IGNORECASE)
_VALUE_GROUP = "value"

#: Literal strings every token pattern but the Telegram one contains. Searching for them with
#: `in` takes nanoseconds; the full expression (look-behinds, no literal prefix) costs ~100x more,
#: so it only runs on text that may hold a secret.
_TOKEN_ANCHORS = ("sk-", "xox", "AKIA", "ghp_", "github_pat_")
#: A necessary condition for a Telegram token that starts with a literal, hence fast to search.
_TELEGRAM_HINT = re.compile(r":(?<=\d{6}:)[A-Za-z0-9_-]{30}")
#: Values `redact_value` keeps as they are: no text inside (bool is an int).
_NO_TEXT = (int, float, type(None))


#: Storage settings that hold an address, not a credential. A variable only they read, as a
#: whole value, is shown but for the credentials in it (`postgresql://app:PASSWORD@db/duragent`):
#: a presigned artifact URL carries the endpoint, bucket and region, and redacted it would lead
#: nowhere.
_ADDRESS_SETTINGS = frozenset({"url", "endpoint_url", "bucket", "region", "prefix"})
_URL_SETTINGS = frozenset({"url", "endpoint_url"})
#: A query parameter that may carry a credential (`?password=`, `?sslpassword=`, `?token=`, `?sig=`).
_CREDENTIAL_PARAMETER = re.compile(r"pass|token|secret|key|sig|credential|auth", re.IGNORECASE)


def _only_addresses(paths: Iterable[tuple[str | int, ...]]) -> bool:
    """Whether every setting in `paths` is a service's address (`services.artifacts.endpoint_url`)."""
    paths = list(paths)
    return bool(paths) and all(
        len(path) == 3 and path[0] == "services" and path[2] in _ADDRESS_SETTINGS for path in paths
    )


def _credential_in(value: str, paths: Iterable[tuple[str | int, ...]]) -> str | None:
    """What of an address must stay secret: None for nothing (a bucket name, a URL without
    credentials), its `user:password@host` part, or all of it when that cannot be told apart."""
    if not any(path[-1] in _URL_SETTINGS for path in paths):
        return None  # (a bucket, a region, a key prefix)
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value.strip())
        password = parts.password
    except ValueError:
        return value
    if not parts.scheme or not parts.netloc:
        return value
    if parts.username and password is None:
        return value  # (a token given as the user name: `https://TOKEN@minio`)
    keys = (pair.partition("=")[0] for pair in parts.query.split("&") if pair)
    if any(_CREDENTIAL_PARAMETER.search(key) for key in keys):
        return value
    return parts.netloc if password is not None else None


def _secret_by_name(name: str, value: str) -> bool:
    """Whether the environment variable `name` holds a secret, by its name (and, for a name that
    only ends in KEY, by its value)."""
    if _CERTAINLY_SECRET_NAME.search(name):
        return True
    return bool(_KEY_NAME.search(name)) and _looks_like_a_key(value)


def _looks_like_a_key(value: str) -> bool:
    """Long, and letters mixed with digits: a generated key, not a word or an identifier."""
    return len(value) >= 16 and any(c.isdigit() for c in value) and any(c.isalpha() for c in value)


def passed_credentials(names: Iterable[str], env: Mapping[str, str]) -> dict[str, str]:
    """The values of the variables `names` (passed on by name to a program: an MCP server's `env`)
    that are secrets by their name or look like a key, by name.

    A person lists such a variable to hand the server a credential (`NOTION_AUTH`); a tool result
    that echoes it would otherwise reach the session and git. `GIT_AUTHOR_NAME: Alice` is neither.
    """
    return {
        name: env[name]
        for name in names
        if name in env
        and name not in NOT_SECRET_ENV
        and (_secret_by_name(name, env[name]) or _looks_like_a_key(env[name]))
    }


def looks_secret(name: str) -> bool:
    """True for environment variable names that hold secrets by convention (`*_KEY`, `*_TOKEN`...)."""
    return bool(_CERTAINLY_SECRET_NAME.search(name) or _KEY_NAME.search(name))


#: A one-line YAML mapping entry (in a list item too): its key and its value as written.
_YAML_ENTRY = re.compile(
    r"""^[ \t]*(?:-[ \t]+)?["']?(?P<key>[A-Za-z0-9_.-]+)["']?[ \t]*:[ \t]+(?P<value>[^#\s].*?)"""
    r"[ \t]*(?:[ \t]#.*)?$"
)
#: Keys that name where a secret is, not hold it (`api_key_env: OPENAI_API_KEY`).
_NAMES_A_PLACE = re.compile(r"(?:^|_)(?:ENV|VAR|VARIABLE|FILE|PATH|COMMAND|CMD)$", re.IGNORECASE)
#: A value that is no secret written out: a `${VAR}` reference, a variable's name, a redaction,
#: YAML's null, a boolean or a number, a block or a flow collection.
_NOT_A_LITERAL = re.compile(
    r"\$\{.*\}|(?-i:[A-Z][A-Z0-9_]*)|\[REDACTED:[^]]*\]|~|null|true|false|yes|no|on|off"
    r"|[-+]?[0-9][0-9_.eE+-]*|[|>][-+0-9]*|[\[{].*",
    re.IGNORECASE,
)
#: The files `in_the_clear` reads.
_YAML_SUFFIXES = (".yaml", ".yml")
#: Key names of secrets beside those of environment variables (`looks_secret`).
_SECRET_KEY = re.compile(r"APIKEY|ACCESS_?KEY|PRIVATE_?KEY|PASSPHRASE|CREDENTIALS?$", re.IGNORECASE)


def literal_secrets(text: str) -> list[tuple[int, str]]:
    """(line number, key) of each secret the YAML `text` writes in the clear: a value under a key
    that names a secret (`api_key`, `token`, `password`, `client_secret`...), written out rather
    than referenced as `${VARIABLE}`.

    Such a value matches no key shape nor environment value when it is a key of a kind the guard
    does not know, so the guard alone would let it into git.
    """
    found: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        entry = _YAML_ENTRY.match(line)
        if entry is None:
            continue
        key, value = entry["key"], entry["value"].strip().strip("\"'")
        name = key.replace("-", "_").replace(".", "_")
        if len(value) < MIN_SECRET_LENGTH or _NAMES_A_PLACE.search(name):
            continue
        if _NOT_A_LITERAL.fullmatch(value):
            continue
        if _secret_by_name(name, value) or _SECRET_KEY.search(name):
            found.append((number, key))
    return found


def _agent_yaml(path: str) -> bool:
    parts = path.replace(os.sep, "/").split("/")
    name = parts[-1].lower()
    if not name.endswith(_YAML_SUFFIXES):
        return False
    return parts[0] in ("agents", "sys") or name in ("agent.yaml", "agent.yml")


def in_the_clear(path: str, added: str) -> list[str]:
    """`literal_secrets` of the lines a commit adds to the repo-relative `path` when it is an
    agent's YAML file (under `agents/` or `sys/`, agents deployed over the admin API, or any
    `agent.yaml`), as the names a refusal gives. The stores' YAML is not read: a session's
    `state.yaml` quotes the conversation, whose events the guard screened as they were written."""
    if not _agent_yaml(path):
        return []
    return [f"`{key}:` written in the clear" for _, key in literal_secrets(added)]


class SecretGuard:
    """Finds and redacts secrets in text and in JSON-like values."""

    def __init__(self, values: Mapping[str, str] | None = None):
        self._names: dict[str, str] = {}
        for name, value in (values or {}).items():
            for form in _forms(value):
                # the first name seen for a value wins, so redactions are stable
                self._names.setdefault(form, name)
        self._pattern = _compile(self._names)
        self._needles = _TOKEN_ANCHORS + tuple(self._names)

    @classmethod
    def from_config(cls, config: DuragentConfig, env: Mapping[str, str] | None = None) -> SecretGuard:
        """A guard for the values of `${NAME}` references in `config`, secret-looking env vars, tokens."""
        env = os.environ if env is None else env
        names = {name for name in config.referenced_env if name not in NOT_SECRET_ENV}
        names.update(name for name in env if _secret_by_name(name, env[name]))
        values: dict[str, str] = {}
        for name in sorted(names & env.keys()):
            paths = config.env_reference_paths(name)
            if _secret_by_name(name, env[name]) or config.env_embedded(name) or not _only_addresses(paths):
                values[name] = env[name]
            elif (credential := _credential_in(env[name], paths)) is not None:
                values[name] = credential
        for name, value in passed_credentials((n for s in config.mcp_servers for n in s.env), env).items():
            values.setdefault(name, value)
        # tokens written literally in duragent.yaml are secrets too
        if config.server.api_token:
            values.setdefault("SERVER_API_TOKEN", config.server.api_token)
        if config.admin.token:
            values.setdefault("ADMIN_TOKEN", config.admin.token)
        # and so are the workspace's own (run/tokens.json): a tool result that printed them (a
        # person approved `cat`, a command reached them) must not keep them in a session or git
        stored = _workspace_tokens(config)
        if stored is not None:
            values.setdefault("SERVER_API_TOKEN", stored.api)
            values.setdefault("ADMIN_TOKEN", stored.admin)
        return cls(values)

    def also_protect(self, values: Mapping[str, str]) -> None:
        """Redact `values` (name -> value) from now on too: the key of a variable an agent names
        (`model.api_key_env`), known once the agent is loaded."""
        names = dict(self._names)
        for name, value in values.items():
            for form in _forms(value):
                names.setdefault(form, name)
        if len(names) == len(self._names):
            return
        # names first: a pattern (even the old one) only ever matches a value `_names` holds
        self._names = names
        self._pattern = _compile(names)
        self._needles = _TOKEN_ANCHORS + tuple(names)

    @property
    def secret_names(self) -> list[str]:
        """Names of the configured secret values (not the token patterns), sorted."""
        return sorted(set(self._names.values()))

    def redact(self, text: str) -> str:
        """`text` with every secret replaced by `[REDACTED:NAME]`."""
        if not self._may_contain_secret(text):
            return text
        return self._pattern.sub(self._replacement, text)

    def redact_value(self, value: Any) -> Any:
        """`value` with secrets redacted in every string inside it (dicts, lists and tuples are copied)."""
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, dict):
            # (numbers and None, half of an event's values, are kept without a call each)
            return {
                key: item if isinstance(item, _NO_TEXT) else self.redact_value(item)
                for key, item in value.items()
            }
        if isinstance(value, list):
            return [self.redact_value(item) for item in value]
        if isinstance(value, tuple):
            return tuple(self.redact_value(item) for item in value)
        return value

    def find(self, text: str) -> list[str]:
        """Names of the secrets present in `text`, each once, in order of first appearance."""
        if not self._may_contain_secret(text):
            return []
        return list(dict.fromkeys(self._name_of(match) for match in self._pattern.finditer(text)))

    def find_in_path(self, path: str) -> list[str]:
        """`find` for a file's path: there an `sk-` word without a digit is a name a person chose
        (`sk-learn-notes.md`), not a key: keys are random, and every key shape is long enough
        that a random one holds a digit."""
        if not self._may_contain_secret(path):
            return []
        names = (
            self._name_of(match)
            for match in self._pattern.finditer(path)
            if match.lastgroup != "API_KEY" or any(c.isdigit() for c in match.group())
        )
        return list(dict.fromkeys(names))

    def contains_secret(self, text: str) -> bool:
        """True when `text` holds at least one secret."""
        return self._may_contain_secret(text) and self._pattern.search(text) is not None

    def _may_contain_secret(self, text: str) -> bool:
        for needle in self._needles:
            if needle in text:
                return True
        return _TELEGRAM_HINT.search(text) is not None

    def _replacement(self, match: re.Match[str]) -> str:
        return f"[REDACTED:{self._name_of(match)}]"

    def _name_of(self, match: re.Match[str]) -> str:
        if match.lastgroup == _VALUE_GROUP:
            return self._names[match.group()]
        return str(match.lastgroup)


def _workspace_tokens(config: DuragentConfig) -> AccessTokens | None:
    """The tokens of the workspace's `run/tokens.json`, or None (no file, or one unreadable)."""
    from duragent.access_tokens import read_tokens

    try:
        return read_tokens(config.data_path)
    except ConfigError:
        return None  # the server refuses to start on it, with this error; nothing to redact yet


def _forms(value: str) -> Iterable[str]:
    """The value as written in text, and as it appears inside a JSON string (events.jsonl).

    Without the white space around it: a key read from a file keeps the file's line break, and
    the provider sends the key without it (so that is how a tool's output shows it)."""
    value = value.strip()
    if len(value) < MIN_SECRET_LENGTH:
        return ()
    escaped = json.dumps(value)[1:-1]
    return (value,) if escaped == value else (value, escaped)


def _compile(values: Mapping[str, str]) -> re.Pattern[str]:
    alternatives = [f"(?P<{name}>{pattern})" for name, pattern in TOKEN_PATTERNS.items()]
    if values:
        # longest first, so a value containing another is redacted whole
        literal = "|".join(re.escape(value) for value in sorted(values, key=len, reverse=True))
        alternatives.insert(0, f"(?P<{_VALUE_GROUP}>{literal})")
    return re.compile("|".join(alternatives))


class RedactingLogFilter(logging.Filter):
    """A logging filter that redacts secrets from every record's message (server logs, plugin stderr)."""

    def __init__(self, guard: SecretGuard):
        super().__init__("duragent.secrets")
        self.guard = guard

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message with secrets redacted; never drops a record."""
        message = record.getMessage()
        redacted = self.guard.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def redact_logs(guard: SecretGuard) -> Callable[[], None]:
    """Redact secrets in everything the root logger's handlers write; returns the undo."""
    log_filter = RedactingLogFilter(guard)
    handlers = list(logging.getLogger().handlers)
    for handler in handlers:
        handler.addFilter(log_filter)

    def undo() -> None:
        for handler in handlers:
            handler.removeFilter(log_filter)

    return undo
