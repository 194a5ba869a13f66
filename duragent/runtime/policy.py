"""Tool policy: which calls run, which are refused, which wait for a person.

An agent's policy is `spec.tools.policy` in agent.yaml merged with `policy.yaml` in the agent
folder (the file's `mode` wins; the lists are joined)::

    mode: ask            # allow | ask | deny: what happens when no pattern matches
    allow: ["bash:git status", "bash:git log *", "read_file"]
    ask: ["write_file:/etc/**"]
    deny: ["bash:rm -rf *", "web_fetch"]

A pattern is `tool:glob` matched against the call's invocation text (the command for bash, the
path for file tools, the URL for web_fetch, the action for memory), or a bare `tool` matching
every call of it. Globs are fnmatch-style; for path-like invocations `*` and `?` stop at `/`
and `**` crosses it, elsewhere `*` matches any text. Order: deny wins, then ask, then allow,
then the mode.

A bash command made of several commands (`;`, `&&`, `|`, `$(...)`, redirections) is checked
piece by piece against deny and ask patterns. An allow pattern allows it only when the pattern has
the same operators in the same places (`bash:make * && make install`), each wildcard matching
inside one simple command: `bash:git *` must not let `git log; rm -rf ~` through. Options that
run programs or write files (`git -c`, `--output`, `--upload-pack`, `find -exec`...) and `$`
expansions are never allowed by a wildcard: such a call gets `ask` unless the pattern spells the
option out. A bash command naming an agent's definition, policy, duragent.yaml, `.git` or the
tokens file is never auto-allowed (ask).

A tool of an MCP server (`<server>__<tool>`, its invocation the arguments as compact JSON) is
also matched by `mcp:<server>:<tool>` patterns (`mcp:time:*`, `mcp:*`), and when no pattern
matches it gets `ask` even in mode `allow` (`deny` in mode `deny`): an outside server's tools
run unasked only when a pattern allows them.

With no policy at all, the default is mode `ask` with DEFAULT_ALLOWED tools allowed.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from duragent.agents.loader import display_path
from duragent.agents.spec import PolicySpec
from duragent.errors import ConfigError, DuragentError, Problem
from duragent.file_stamps import Stamp, settled, stamp
from duragent.ids import ulid
from duragent.mcp.naming import pattern_as_seen, split_tool_name
from duragent.tools.protected import names_protected_file, shell_tokens
from duragent.tools.registry import PATH_INVOCATION_TOOLS
from duragent.validation import validate_document
from duragent.yaml_source import load_yaml_file, load_yaml_text

log = logging.getLogger(__name__)

Decision = Literal["allow", "ask", "deny"]
POLICY_FILENAME = "policy.yaml"
#: Tools that only read, talk to the user or keep the agent's own notes, allowed when an agent has
#: no policy at all. (Not `memory:update_world`: world memory is in every agent's context, so an
#: agent that read a hostile page would be writing instructions to all the others.)
DEFAULT_ALLOWED = (
    "memory:recall",
    "memory:remember",
    "memory:reflect",
    "notify_user",
    "read_file",
    "list_files",
    "artifact_list",
    "artifact_get",
    "skill",
    "reload_tools",
)
#: Modes of the Rust version's policy files, read as their equivalents here.
_MODE_ALIASES = {"dangerous": "allow", "restrict": "deny"}
_SHELL_OPERATORS = frozenset(";&|<>()")
_KEY_LINE = re.compile(r"^allow[ \t]*:(?P<rest>.*)$")
_EDIT_LOCK = threading.Lock()


class PolicyEditError(DuragentError):
    """allow_always could not add the pattern to the policy file without rewriting it by hand."""


class PolicyFile(BaseModel):
    """The contents of an agent's policy.yaml."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)
    __extra_keys__ = ("apiVersion", "kind")

    mode: Decision | None = Field(None, description="What happens when no pattern matches.")
    allow: list[str] = []
    ask: list[str] = []
    deny: list[str] = []

    @model_validator(mode="before")
    @classmethod
    def _rust_modes(cls, value: Any) -> Any:
        # Only a string can be an alias; anything else is left for the field's own error.
        mode = value.get("mode") if isinstance(value, dict) else None
        if isinstance(mode, str) and mode in _MODE_ALIASES:
            value = {**value, "mode": _MODE_ALIASES[mode]}
        return value

    @field_validator("allow", "ask", "deny", mode="before")
    @classmethod
    def _null_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value

    @field_validator("allow", "ask", "deny")
    @classmethod
    def _non_empty(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            if not pattern.strip():
                raise ValueError("a pattern must not be empty")
        return patterns


@dataclass(frozen=True)
class PolicyDecision:
    """The outcome for one call and the pattern that decided it (None when the mode did)."""

    decision: Decision
    pattern: str | None = None


@dataclass(frozen=True)
class ToolPolicy:
    """An agent's merged policy. `path` is the policy.yaml that allow_always edits."""

    mode: Decision = "ask"
    allow: tuple[str, ...] = ()
    ask: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    path: Path | None = None
    is_default: bool = False
    warnings: tuple[Problem, ...] = field(default=(), compare=False)

    def decide(self, tool: str, invocation: str) -> PolicyDecision:
        """allow, ask or deny for `tool` called with this invocation text: deny > ask > allow > mode."""
        compound = tool == "bash" and not is_simple_bash_command(invocation)
        pieces = [invocation, *bash_segments(invocation)] if compound else [invocation]
        checks: tuple[tuple[Decision, tuple[str, ...]], ...] = (("deny", self.deny), ("ask", self.ask))
        for decision, patterns in checks:
            for pattern in patterns:
                if any(pattern_matches(pattern, tool, piece) for piece in pieces):
                    return PolicyDecision(decision, pattern)
        allowed: PolicyDecision | None = None
        for pattern in self.allow:
            verdict = _allow_verdict(pattern, tool, invocation)
            if verdict == "allow":
                allowed = PolicyDecision("allow", pattern)
                break
            if verdict == "ask" and allowed is None:
                # A wildcard matched only thanks to an escape (`git -c`, `--output`): a person decides.
                allowed = PolicyDecision("ask", pattern)
        outcome = allowed or PolicyDecision(self.mode, None)
        if outcome.pattern is None and outcome.decision == "allow" and split_tool_name(tool) is not None:
            return PolicyDecision("ask", None)
        if outcome.decision == "allow" and tool == "bash" and touches_protected_file(invocation):
            # Only a person changes an agent's definition, policy or the server's configuration.
            return PolicyDecision("ask", outcome.pattern)
        return outcome

    def allow_always(self, tool: str, invocation: str) -> Path:
        """Save an exact allow pattern for this call to the agent's policy.yaml; returns the file."""
        if self.path is None:
            raise PolicyEditError("this policy has no policy.yaml to save 'allow always' to")
        return allow_always(tool, invocation, self.path, seed_defaults=self.is_default)


def default_policy(path: Path | None = None) -> ToolPolicy:
    """The policy of an agent that has none: ask, except for the read-only DEFAULT_ALLOWED tools."""
    return ToolPolicy(mode="ask", allow=DEFAULT_ALLOWED, path=path, is_default=True)


def load_policy(agent_dir: Path, spec_policy: PolicySpec | None = None) -> ToolPolicy:
    """The agent's policy: `spec.tools.policy` merged with `<agent_dir>/policy.yaml` (file's mode wins).

    Raises ConfigError with file:line for an invalid policy.yaml.
    """
    path = agent_dir / POLICY_FILENAME
    # (read by its display name: problems name the file as `agent validate` and /readyz do)
    file_policy, warnings = read_policy_file(Path(display_path(path))) if path.exists() else (None, [])
    if file_policy is None and spec_policy is None:
        return default_policy(path)
    parts: list[Any] = [part for part in (spec_policy, file_policy) if part is not None]
    mode: Decision = "ask"
    if spec_policy is not None:
        mode = spec_policy.mode
    if file_policy is not None and file_policy.mode is not None:
        mode = file_policy.mode
    return ToolPolicy(
        mode=mode,
        allow=_joined(part.allow for part in parts),
        ask=_joined(part.ask for part in parts),
        deny=_joined(part.deny for part in parts),
        path=path,
        warnings=tuple(warnings),
    )


class PolicyCache:
    """Agents' policies kept between turns: one stat of policy.yaml a turn, parsed again only when
    it changed (`duragent.file_stamps`) or the agent was reloaded (a new `spec.tools.policy`).

    A policy.yaml edited into one that does not load leaves the agent answering under the last
    policy of the same agent version read here, as a broken agent.yaml leaves the registry's last
    valid version answering (the registry reports the file's problems: /readyz, `send`). With
    no such policy yet, `load` raises the file's ConfigError.
    """

    def __init__(self) -> None:
        self._entries: dict[Path, tuple[Stamp, PolicySpec | None, ToolPolicy]] = {}
        self._paths: dict[Path, str] = {}
        #: The last policy that loaded, per agent folder (kept also while the file changes).
        self._valid: dict[Path, tuple[PolicySpec | None, ToolPolicy]] = {}

    def load(self, agent_dir: Path, spec_policy: PolicySpec | None = None) -> ToolPolicy:
        """`load_policy(agent_dir, spec_policy)`, from the cache while policy.yaml is unchanged."""
        path = self._paths.get(agent_dir)
        if path is None:
            path = self._paths[agent_dir] = os.path.join(agent_dir, POLICY_FILENAME)
        current = stamp(path)  # before the read: a change after it shows next time
        entry = self._entries.get(agent_dir)
        if entry is not None and entry[0] == current and entry[1] is spec_policy:
            return entry[2]
        try:
            policy = load_policy(agent_dir, spec_policy)
        except ConfigError:
            valid = self._valid.get(agent_dir)
            if valid is None or valid[0] is not spec_policy:
                raise
            policy = valid[1]
            if entry is None or entry[0] != current:
                log.warning("%s does not load: the last policy that did stays in use", path)
        else:
            self._valid[agent_dir] = (spec_policy, policy)
        if settled((current,)):
            self._entries[agent_dir] = (current, spec_policy, policy)
        else:
            self._entries.pop(agent_dir, None)
        return policy


def read_policy_file(path: Path) -> tuple[PolicyFile, list[Problem]]:
    """Parse and validate a policy.yaml; ConfigError with file:line when it is wrong."""
    doc = load_yaml_file(path, {}, interpolate=False)
    return validate_document(PolicyFile, doc)


def _joined(lists: Any) -> tuple[str, ...]:
    return tuple(dict.fromkeys(pattern for patterns in lists for pattern in patterns))


# --- patterns ---------------------------------------------------------------------------------


def pattern_matches(pattern: str, tool: str, invocation: str) -> bool:
    """Whether `tool:glob` (or a bare `tool`) matches this call."""
    tool_glob, colon, rest = pattern.partition(":")
    mcp_names = split_tool_name(tool) if tool_glob == "mcp" and colon else None
    if mcp_names is not None:
        # `mcp:<server>:<tool>`, optionally `:<arguments glob>`; the tool by the server's name for
        # it or the model's (`delete.file` is `delete_file` to the model).
        server, name = mcp_names
        server_glob, tool_colon, tail = rest.partition(":")
        if tool_colon:
            tool_glob, args_colon, args_glob = tail.partition(":")
            rest = f"{server_glob}:{pattern_as_seen(server_glob, tool_glob)}{args_colon}{args_glob}"
        named = _compiled(rest, False)
        return bool(named.fullmatch(f"{server}:{name}") or named.fullmatch(f"{server}:{name}:{invocation}"))
    if not _compiled(tool_glob, False).fullmatch(tool):
        return False
    if not colon:
        return True
    return bool(_compiled(rest, tool in PATH_INVOCATION_TOOLS).fullmatch(invocation))


def _allow_verdict(pattern: str, tool: str, invocation: str) -> Decision | None:
    """What allow `pattern` says about this call: allow, ask (an escape), or None (no match)."""
    if not pattern_matches(pattern, tool, invocation) and tool != "bash":
        return None
    if tool != "bash" or ":" not in pattern:
        return "allow" if pattern_matches(pattern, tool, invocation) else None
    if not _compiled(pattern.partition(":")[0], False).fullmatch(tool):
        return None
    if _is_exact(pattern):
        # An exact pattern (as "allow always" saves) is the one command a person approved.
        return "allow" if pattern_matches(pattern, tool, invocation) else None
    return bash_allow(pattern.partition(":")[2], invocation)


def bash_allow(glob: str, command: str) -> Decision | None:
    """Whether the wildcard bash pattern `glob` allows `command`: allow, ask, or None.

    The command and the pattern are split into simple commands by a shell lexer; they must have
    the same operators (`;`, `&&`, `|`, redirections...) in the same places, so a wildcard never
    swallows a `; rm -rf ~`. Substitutions (`$(...)`, backticks, `<(...)`) and new lines are never
    allowed by a wildcard. A simple command matched through a wildcard that carries an option
    which runs programs or writes files (ESCAPE_OPTIONS), a subcommand that does
    (ESCAPE_SUBCOMMANDS) or a `$` expansion the pattern does not spell out gets `ask`.
    """
    if any(marker in command for marker in _SUBSTITUTIONS):
        return None
    command_parts, pattern_parts = _split_simple(command), _split_simple(glob)
    if command_parts is None or pattern_parts is None:
        return None
    (command_words, command_ops), (pattern_words, pattern_ops) = command_parts, pattern_parts
    if command_ops != pattern_ops or len(command_words) != len(pattern_words):
        return None
    verdict: Decision = "allow"
    for words, wanted in zip(command_words, pattern_words, strict=True):
        wanted_glob = " ".join(wanted)
        if not _compiled(wanted_glob, False).fullmatch(" ".join(words)):
            return None
        if not _translate(wanted_glob, False)[1] and _escapes(words, wanted):
            verdict = "ask"
    return verdict


#: Options that make an otherwise harmless command run programs, read foreign config, write files
#: or read the paths it works on from a file (which the check of the words' paths cannot see).
#: A wildcard never allows them; the pattern must spell them out. Per program, plus for every program.
ESCAPE_OPTIONS: dict[str, frozenset[str]] = {
    "git": frozenset(
        {
            "-c",
            "-C",
            "-O",
            "-u",
            "-x",
            "--config-env",
            "--attr-source",
            "--super-prefix",
            "--exec-path",
            "--git-dir",
            "--work-tree",
            "--namespace",
            "--upload-pack",
            "--receive-pack",
            "--exec",
            "--open-files-in-pager",
            "--extcmd",
            "--tool",
            "--template",
            "--ext-diff",
            "--textconv",
            "--output",
            "-o",
            # (`git apply` outside a repository writes where the patch says, `../..` too)
            "--unsafe-paths",
        }
    ),
    "find": frozenset(
        {"-exec", "-execdir", "-ok", "-okdir", "-delete", "-fprint", "-fprint0", "-fprintf", "-fls"}
    ),
    "tar": frozenset(
        {
            "--to-command",
            "--checkpoint-action",
            "--use-compress-program",
            "-I",
            "--rsh-command",
            "-T",
            "-F",
            "--info-script",
            "--new-volume-script",
            # members named `/…/memory/world/x.md` or `../../x` are written there, not below `.`
            "-P",
            "--absolute-names",
        }
    ),
    "unzip": frozenset({"-:"}),  # (the same: members' `../` kept)
    "rsync": frozenset({"-e", "--rsh", "--rsync-path"}),
    "ssh": frozenset({"-o", "-F"}),
    "scp": frozenset({"-o", "-F", "-S"}),
    "sed": frozenset({"-i", "--in-place"}),
    "*": frozenset(
        {
            "-o",
            "--output",
            "--output-file",
            "--output-document",
            "--config",
            "--exec",
            "--upload-pack",
            "--receive-pack",
            "--exec-path",
            "--git-dir",
            "--work-tree",
            "--rcfile",
            "--init-file",
            "--log-file",
            "--pre-invoke",
            "--post-invoke",
            # the paths to read come from a file the check does not read (`tar -T list`)
            "--files-from",
            "--files0-from",
            "--pathspec-from-file",
        }
    ),
}
#: Subcommands that run programs, change configuration (an alias or a hook is a program) or
#: hand out credentials. A wildcard never allows them; the pattern must spell them out.
ESCAPE_SUBCOMMANDS: dict[str, frozenset[str]] = {
    "git": frozenset(
        {
            "config",
            "submodule",
            "bisect",
            "filter-branch",
            "instaweb",
            "daemon",
            "hook",
            "difftool",
            "mergetool",
            "credential",
            "send-email",
            "web--browse",
        }
    ),
}
#: Programs whose `-o` only shapes output (it is an escape everywhere else: curl, gcc, sort, ssh...).
_HARMLESS_DASH_O = frozenset({"grep", "egrep", "fgrep", "rg", "ls", "ps", "df", "lsof", "pgrep", "pkill"})
_SUBSTITUTIONS = ("`", "$(", "<(", ">(", "\n", "\r")


def _escapes(words: list[str], pattern_words: list[str]) -> bool:
    """True when `words` carry an escape option, subcommand or `$` expansion that `pattern_words`
    do not spell out."""
    program = os.path.basename(words[0]) if words else ""
    options = ESCAPE_OPTIONS.get(program, frozenset()) | ESCAPE_OPTIONS["*"]
    if program in _HARMLESS_DASH_O:
        options = options - {"-o"}
    spelled = " ".join(pattern_words)
    subcommand = next((word for word in words[1:] if not word.startswith("-")), None)
    if subcommand in ESCAPE_SUBCOMMANDS.get(program, ()) and subcommand not in pattern_words:
        return True
    arguments = words[1:]
    if program == "tar" and arguments and not arguments[0].startswith("-"):
        # tar's first word may be its options without the dash: `tar xPf a.tar` is `tar -xPf a.tar`
        arguments = [f"-{arguments[0]}", *arguments[1:]]
    for word in arguments:
        if "$" in word and word not in spelled:
            return True
        name = _option_name(word, options)
        if (
            name is not None
            and name not in pattern_words
            and not any(w.startswith(name) for w in pattern_words)
        ):
            return True
    return False


def _option_name(word: str, options: frozenset[str]) -> str | None:
    """The escape option `word` is (`--output=x`, `-o/tmp/x`, `-cfoo=bar`, `--out` count), or None."""
    if not word.startswith("-") or word in ("-", "--"):
        return None
    if word.startswith("--"):
        head = word.split("=", 1)[0]
        if head in options:
            return head
        # GNU getopt and git accept unambiguous abbreviations: --out, --upload-p, --exec-p...
        if len(head) > 4 and any(option.startswith(head) for option in options if option.startswith("--")):
            return head
        return None
    if word in options:
        return word
    # A short option with its value attached (-o/tmp/x, -cfoo=bar).
    if word[:2] in options:
        return word[:2]
    # Or bundled with others (`curl -sSLo ~/.bashrc`, `sed -ni`, `tar -cT list`): which letters
    # are flags is the program's to say, so any of a bundle's letters may be the escape.
    letters = word[1:]
    if letters.isascii() and letters.replace(":", "").isalpha():  # (`unzip -o:`)
        return next((f"-{letter}" for letter in letters if f"-{letter}" in options), None)
    return None


def _split_simple(command: str) -> tuple[list[list[str]], list[str]] | None:
    """Simple commands (as word lists) and the operators between them, by a shell lexer."""
    tokens = shell_tokens(command)
    if tokens is None:
        return None
    words: list[list[str]] = [[]]
    operators: list[str] = []
    for token in tokens:
        if _is_operator(token):
            operators.append(token)
            words.append([])
        else:
            words[-1].append(token)
    return words, operators


def touches_protected_file(command: str) -> bool:
    """Whether a bash command line names a protected file (then it is never auto-allowed).

    Checked on the raw text and on the words a shell would see, so quoting (`pol''icy.yaml`)
    does not hide a name.
    """
    return names_protected_file(command, shell_tokens(command) or ())


def exact_pattern(tool: str, invocation: str) -> str:
    """A pattern matching exactly this call (glob characters in the invocation escaped)."""
    escaped = re.sub(r"([*?\[])", r"[\1]", invocation)
    return f"{tool}:{escaped}"


@lru_cache(maxsize=1024)
def _compiled(glob: str, path_like: bool) -> re.Pattern[str]:
    return re.compile(_translate(glob, path_like)[0], re.DOTALL)


def _is_exact(pattern: str) -> bool:
    """True when the pattern can match one invocation only (no wildcard left after escapes)."""
    _tool, colon, rest = pattern.partition(":")
    return bool(colon) and _translate(rest, False)[1]


def _translate(glob: str, path_like: bool) -> tuple[str, bool]:
    """The regex for a glob, and whether the glob is a plain literal."""
    star = "[^/]*" if path_like else ".*"
    one = "[^/]" if path_like else "."
    out: list[str] = []
    literal = True
    i = 0
    while i < len(glob):
        char = glob[i]
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")  # `a/**/b` also matches `a/b`
            literal, i = False, i + 3
        elif glob.startswith("**", i):
            out.append(".*")
            literal, i = False, i + 2
        elif char == "*":
            out.append(star)
            literal, i = False, i + 1
        elif char == "?":
            out.append(one)
            literal, i = False, i + 1
        elif char == "[":
            end = _class_end(glob, i)
            if end < 0:
                out.append(re.escape(char))
                i += 1
                continue
            body = glob[i + 1 : end]
            if len(body) == 1:
                out.append(re.escape(body))  # `[*]` is how a literal `*` is written
            else:
                literal = False
                negate = body.startswith("!")
                inner = body[1:] if negate else body
                out.append(("[^" if negate else "[") + inner.replace("\\", "\\\\") + "]")
            i = end + 1
        else:
            out.append(re.escape(char))
            i += 1
    return "".join(out), literal


def _class_end(glob: str, start: int) -> int:
    """Index of the `]` closing the class opened at `start`, or -1 (then `[` is literal)."""
    i = start + 1
    if i < len(glob) and glob[i] == "!":
        i += 1
    if i < len(glob) and glob[i] == "]":
        i += 1
    return glob.find("]", i)


def is_simple_bash_command(command: str) -> bool:
    """True for one plain command: no `;`, `&&`, `|`, redirection, substitution or second line."""
    if any(marker in command for marker in ("`", "$(", "\n", "<(", ">(")):
        return False
    tokens = shell_tokens(command)
    return tokens is not None and not any(_is_operator(token) for token in tokens)


def bash_segments(command: str) -> list[str]:
    """Every simple command a command line may run, for deny and ask checks.

    Deliberately generous: the line is split at operators both with and without regard to
    quoting, so a command hidden in a quoted substitution (`echo "$(rm -rf ~)"`) is still seen.
    """
    segments: list[str] = []
    tokens = shell_tokens(command.replace("`", " ; ").replace("$(", " ; ").replace("\n", " ; "))
    if tokens is not None:
        current: list[str] = []
        for token in [*tokens, ";"]:
            if _is_operator(token):
                segments.append(" ".join(current))
                current = []
            else:
                current.append(token)
    segments += [piece.strip(" \t'\"") for piece in _NAIVE_SPLIT.split(command)]
    return [segment for segment in dict.fromkeys(segments) if segment]


_NAIVE_SPLIT = re.compile(r"\$\(|[;&|\n`()<>]")


def _is_operator(token: str) -> bool:
    return bool(token) and set(token) <= _SHELL_OPERATORS


# --- allow always -----------------------------------------------------------------------------


def allow_always(tool: str, invocation: str, policy_path: Path, *, seed_defaults: bool = False) -> Path:
    """Append an exact allow pattern for this call to `policy_path` with a minimal text edit.

    Comments and every other line are kept; a missing file is created (with DEFAULT_ALLOWED
    when `seed_defaults`, so an agent that had no policy keeps its defaults). Returns the path
    so the caller can tell the committer.
    """
    pattern = exact_pattern(tool, invocation)
    with _EDIT_LOCK:
        try:
            old = policy_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            old = None
        if old is not None and pattern in _parse(old, policy_path).allow:
            return policy_path
        new = _new_file(pattern, seed_defaults) if old is None else add_allow_pattern(old, pattern)
        if pattern not in _parse(new, policy_path).allow:
            raise PolicyEditError(f"could not add {pattern!r} to {policy_path}; add it to `allow:` by hand")
        _write_atomically(policy_path, new)
    return policy_path


def add_allow_pattern(text: str, pattern: str) -> str:
    """`text` of a policy.yaml with `pattern` appended to its top-level `allow:` list."""
    if text and not text.endswith("\n"):
        text += "\n"
    lines = text.splitlines(keepends=True)
    item = json.dumps(pattern, ensure_ascii=False)
    key_index = next((i for i, line in enumerate(lines) if _KEY_LINE.match(line.rstrip("\r\n"))), None)
    if key_index is None:
        return text + f"allow:\n  - {item}\n"
    match = _KEY_LINE.match(lines[key_index].rstrip("\r\n"))
    assert match is not None
    value, comment = _split_comment(match.group("rest"))
    if value:
        return _flow_list_to_block(lines, key_index, value, comment, item)
    last_item, indent = key_index, "  "
    for i in range(key_index + 1, len(lines)):
        stripped = lines[i].strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not (lines[i][0] in " \t" or stripped.startswith("-")):
            break
        if last_item == key_index:
            indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
        last_item = i
    lines.insert(last_item + 1, f"{indent}- {item}\n")
    return "".join(lines)


def _flow_list_to_block(lines: list[str], key_index: int, value: str, comment: str, item: str) -> str:
    """`allow: [a, b]` -> a block list with the new item (a flow list cannot be appended to in place)."""
    import yaml

    try:
        existing = yaml.safe_load(value)
    except yaml.YAMLError:
        existing = None
    if not isinstance(existing, list):
        raise PolicyEditError(f"`allow: {value}` is not a one-line list; add the pattern by hand")
    block = [f"allow:{' ' + comment if comment else ''}\n"]
    block += [f"  - {json.dumps(str(entry), ensure_ascii=False)}\n" for entry in existing]
    block.append(f"  - {item}\n")
    lines[key_index : key_index + 1] = block
    return "".join(lines)


def _split_comment(rest: str) -> tuple[str, str]:
    """`' [a, b]  # note'` -> ("[a, b]", "# note"), ignoring `#` inside quotes."""
    quote = ""
    for i, char in enumerate(rest):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or rest[i - 1] in " \t"):
            return rest[:i].strip(), rest[i:].strip()
    return rest.strip(), ""


def _new_file(pattern: str, seed_defaults: bool) -> str:
    allowed = [*(DEFAULT_ALLOWED if seed_defaults else ()), pattern]
    items = "".join(f"  - {json.dumps(entry, ensure_ascii=False)}\n" for entry in allowed)
    header = (
        "# Tool policy (see docs/tools.md): deny wins, then ask, then allow, then mode.\n"
        "# Entries were added by 'allow always' decisions; edit freely.\n"
    )
    mode = "mode: ask\n" if seed_defaults else ""
    return f"{header}{mode}allow:\n{items}"


def _parse(text: str, path: Path) -> PolicyFile:
    doc = load_yaml_text(text, str(path), {}, interpolate=False)
    try:
        return validate_document(PolicyFile, doc)[0]
    except ConfigError as exc:
        raise PolicyEditError(f"{path} is not a valid policy file: {exc}") from None


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{ulid()}.tmp")
    try:
        temp.write_text(text, encoding="utf-8")
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
