"""Turn an agent folder (`agent.yaml` + prompt Markdown) into a validated `Agent`.

Every problem is reported at once, each with the `file:line:column` of the key or value at
fault, for both the full form and the flat shorthand: validation runs on the normalised
full form, and field paths are mapped back to where the user wrote them.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import ValidationError

from duragent.agents.spec import (
    BUILTIN_TOOLS,
    FULL_FORM_KEYS,
    NAME_PATTERN,
    AgentDocument,
    AgentSpec,
    is_shorthand,
    normalise_shorthand,
)
from duragent.config import DuragentConfig
from duragent.errors import ConfigError, Location, Problem
from duragent.validation import describe_error, dotted, unknown_key_warnings
from duragent.yaml_source import FieldPath, YamlDocument, load_yaml_file

T = TypeVar("T")

AGENT_FILENAME = "agent.yaml"
#: The policy file the runtime reads beside agent.yaml (`duragent.runtime.policy.POLICY_FILENAME`).
POLICY_FILENAME = "policy.yaml"
#: A second policy file `agent validate` checks (the runtime reads only policy.yaml).
LOCAL_POLICY_FILENAME = "policy.local.yaml"
PROMPT_FIELDS = ("soul", "system_prompt", "instructions")
SESSION_SETTINGS = ("on_disconnect", "max_background_runtime", "output_buffer_size")
_PROMPT_SUFFIXES = (".md", ".txt")
_METADATA_KEYS = ("name", "description", "labels", "version")


@dataclass(frozen=True)
class Setting(Generic[T]):
    """A resolved value and where it came from (`file:line:column`, or "default")."""

    value: T
    source: str


@dataclass(frozen=True)
class AgentFileLayout:
    """The parsed agent.yaml and how full-form field paths map to where they are in the file."""

    document: YamlDocument
    shorthand: bool

    def file_path(self, path: FieldPath) -> FieldPath:
        """`("spec", "model", "name")` -> `("model", "name")` in a shorthand file; unchanged otherwise."""
        if self.shorthand and path and path[0] in ("metadata", "spec"):
            return path[1:]
        return path

    def locate(self, path: FieldPath, *, key: bool = False) -> Location:
        """Where the full-form `path` is written in the file."""
        return self.document.locate(self.file_path(path), key=key)


@dataclass(frozen=True)
class Agent:
    """A loaded, validated agent: its definition and the text of its prompts."""

    name: str
    directory: Path
    source: Path
    document: AgentDocument
    soul: str
    system_prompt: str
    instructions: str
    #: Prompt fields read from files (field -> file); fields absent here were inline or unset.
    prompt_files: Mapping[str, Path] = field(default_factory=dict, compare=False)
    layout: AgentFileLayout | None = field(default=None, compare=False, repr=False)
    #: The environment variables agent.yaml's `${NAME}` references read (their values are secrets).
    referenced_env: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    @functools.cached_property
    def spec(self) -> AgentSpec:
        """The agent's `spec` section (kept on the agent: a turn asks for it a dozen times)."""
        return self.document.spec

    @property
    def description(self) -> str:
        """The one-line description, or "" when the agent has none."""
        return self.document.metadata.description or ""

    def locate(self, path: FieldPath) -> Location:
        """Where the full-form field `path` (e.g. `("spec", "session", "on_disconnect")`) is set."""
        if self.layout is None:
            return Location(str(self.source))
        return self.layout.locate(path)


def discover_agents(agents_dir: Path) -> list[Path]:
    """Sorted subfolders of `agents_dir` that hold an agent.yaml (hidden folders are skipped)."""
    if not agents_dir.is_dir():
        return []
    return sorted(
        child
        for child in agents_dir.iterdir()
        if child.is_dir() and not child.name.startswith(".") and (child / AGENT_FILENAME).is_file()
    )


def validate_agent_folder(
    directory: Path, env: Mapping[str, str] | None = None, *, shared_web_search: bool = False
) -> tuple[list[Problem], list[Problem]]:
    """Every problem (and warning) of an agent folder: agent.yaml, prompts, policy, skills, tool folders.

    What `duragent agent validate` reports: policy.yaml (and policy.local.yaml) are read as the
    runtime reads them, so a file the server would refuse is never called valid.
    `shared_web_search`: duragent.yaml says where `web_search` searches for every agent.
    """
    from duragent.skills.discovery import agent_skills_dir, scan_folder
    from duragent.tools.folders import TOOLS_FOLDER, scan_tool_folders

    problems: list[Problem] = []
    warnings: list[Problem] = []
    skills_dir: str | None = None
    try:
        agent, found = load_agent(directory, env)
        warnings += found
        skills_dir = agent.spec.skills_dir
        if not shared_web_search:
            problems += web_search_problems(agent)
    except ConfigError as exc:
        problems += exc.problems
    problems += scan_folder(agent_skills_dir(directory.resolve(), skills_dir), "agent")[1]
    problems += scan_tool_folders(directory.resolve() / TOOLS_FOLDER)[1]
    # (policy.yaml is load_agent's: the runtime reads it in every turn)
    local_problems, local_warnings = policy_file_problems(directory.resolve(), LOCAL_POLICY_FILENAME)
    return problems + local_problems, warnings + local_warnings


def policy_file_problems(directory: Path, name: str = POLICY_FILENAME) -> tuple[list[Problem], list[Problem]]:
    """The problems and warnings (unknown keys) of the agent's policy file `name`, read as the
    runtime reads it; none when there is no such file. Locations are `display_path`s."""
    path = directory / name
    if not path.exists():
        return [], []
    # (here, not above: an agent without the file does not load the policy's parser at start)
    from duragent.runtime.policy import read_policy_file

    try:
        return [], read_policy_file(Path(display_path(path)))[1]
    except ConfigError as exc:
        return list(exc.problems), []


def load_agent(directory: Path, env: Mapping[str, str] | None = None) -> tuple[Agent, list[Problem]]:
    """Load the agent in `directory`; raise ConfigError listing every problem, return warnings.

    Its files are agent.yaml, the prompt files it names and policy.yaml, which the runtime reads
    in every turn: a broken policy.yaml makes the agent as broken as a broken agent.yaml.
    """
    directory = directory.resolve()
    policy_problems, policy_warnings = policy_file_problems(directory)
    try:
        agent, warnings = _load_definition(directory, env)
    except ConfigError as exc:
        raise ConfigError([*exc.problems, *policy_problems]) from None
    if policy_problems:
        raise ConfigError(policy_problems)
    return agent, warnings + policy_warnings


def _load_definition(directory: Path, env: Mapping[str, str] | None) -> tuple[Agent, list[Problem]]:
    """agent.yaml and its prompt files, as an Agent (ConfigError listing every problem), and warnings."""
    source = directory / AGENT_FILENAME
    if not source.is_file():
        raise ConfigError(f"{display_path(directory)}: no {AGENT_FILENAME} in this folder")
    # Opened by its display name so every location reads as a path the user can click.
    doc = load_yaml_file(Path(display_path(source)), os.environ if env is None else env)
    if not isinstance(doc.data, dict):
        raise ConfigError([Problem("agent.yaml must be a YAML mapping", doc.locate(()))])
    layout = AgentFileLayout(doc, is_shorthand(doc.data))
    data = normalise_shorthand(doc.data) if layout.shorthand else doc.data

    problems: list[Problem] = []
    document = _validate(data, layout, problems)
    problems += _name_problems(data, directory, layout)
    mixed_form: list[Problem] = []
    if document is None:
        # (a valid file gets an unknown-key warning for each of them instead)
        mixed_form = _mixed_form_problems(data, layout)
        problems += mixed_form
    problems += _tool_problems(data, layout)
    prompts, prompt_files = _read_prompts(data, directory, layout, problems)
    if problems or document is None:
        # A misspelt key is often why a required one is missing: its 'did you mean' goes with
        # the error, which would otherwise name only the key that is not there. (The keys of the
        # shorthand in a full-form file have their own problem already.)
        said = {_reading_order(problem) for problem in mixed_form}
        problems += [w for w in _key_warnings(doc.data, layout) if _reading_order(w) not in said]
        raise ConfigError(sorted(problems, key=_reading_order))

    agent = Agent(
        name=document.metadata.name,
        directory=directory,
        source=source,
        document=document,
        soul=prompts.get("soul", ""),
        system_prompt=prompts.get("system_prompt", ""),
        instructions=prompts.get("instructions", ""),
        referenced_env=frozenset(doc.referenced_env),
        prompt_files=prompt_files,
        layout=layout,
    )
    return agent, _key_warnings(doc.data, layout)


def session_settings(agent: Agent, config: DuragentConfig) -> dict[str, Setting[Any]]:
    """Effective session settings: the agent's `spec.session` over duragent.yaml's `session`."""
    settings: dict[str, Setting[Any]] = {}
    for key in SESSION_SETTINGS:
        own = getattr(agent.spec.session, key)
        if own is not None:
            settings[key] = Setting(own, str(agent.locate(("spec", "session", key))))
        elif "session" in config.model_fields_set and key in config.session.model_fields_set:
            settings[key] = Setting(getattr(config.session, key), str(config.locate(("session", key))))
        else:
            settings[key] = Setting(getattr(config.session, key), "default")
    return settings


def is_prompt_path(value: str) -> bool:
    """True when a prompt field names a file (one line, `.md`/`.txt` in any case, or `./`/`../`)
    not inline text."""
    text = value.strip()
    if not text or "\n" in text:
        return False
    # (`SOUL.MD` too: taken for inline text, the file's name would be the whole prompt)
    return text.lower().endswith(_PROMPT_SUFFIXES) or text.startswith(("./", "../"))


def display_path(path: Path) -> str:
    """A path as messages show it: relative to the working directory when inside it, else absolute."""
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _validate(data: dict[str, Any], layout: AgentFileLayout, problems: list[Problem]) -> AgentDocument | None:
    try:
        return AgentDocument.model_validate(data)
    except ValidationError as exc:
        spec = data.get("spec")
        tools = spec.get("tools") if isinstance(spec, dict) else None
        for error in exc.errors(include_url=False):
            where = layout.file_path(_as_written(tuple(error["loc"]), tools))
            problems.append(Problem(describe_error(error, where), layout.document.locate(where)))
        return None


def _as_written(path: FieldPath, tools: Any) -> FieldPath:
    """`path` as the user wrote it: `spec.tools.cli[1].command` is `spec.tools[3].command` when
    `tools` is a plain list (validated as `builtin` and `cli` lists, in their order in it)."""
    if not isinstance(tools, list) or path[:2] != ("spec", "tools") or len(path) < 4:
        return path
    kind, index = path[2], path[3]
    is_cli = [isinstance(item, dict) and item.get("type") == "cli" for item in tools]
    positions = [i for i, cli in enumerate(is_cli) if cli == (kind == "cli")]
    if kind not in ("builtin", "cli") or not isinstance(index, int) or index >= len(positions):
        return path
    item = positions[index]
    if kind == "builtin" and isinstance(tools[item], dict):
        return ("spec", "tools", item, "name")
    return ("spec", "tools", item, *path[4:])


def _mixed_form_problems(data: dict[str, Any], layout: AgentFileLayout) -> list[Problem]:
    """Shorthand keys (`name`, `model`...) at the top of a full-form file, where they are ignored:
    one `apiVersion`, `kind`, `metadata` or `spec` key makes the whole file the full form."""
    if layout.shorthand:
        return []
    marks = ", ".join(key for key in data if key in FULL_FORM_KEYS)
    problems = []
    for key in data:
        if key in _METADATA_KEYS or key in AgentSpec.model_fields:
            section = "metadata" if key in _METADATA_KEYS else "spec"
            problems.append(
                Problem(
                    f"{key} at the top level is the flat shorthand's, but this file is in the full "
                    f"form (it has {marks}): move {key} under {section}",
                    layout.locate((key,), key=True),
                )
            )
    return problems


def _name_problems(data: dict[str, Any], directory: Path, layout: AgentFileLayout) -> list[Problem]:
    metadata = data.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if not isinstance(name, str) or name == directory.name:
        return []
    field_name = dotted(layout.file_path(("metadata", "name")))
    if re.fullmatch(NAME_PATTERN, directory.name) is None:
        # (`mv helper helper.old` to keep a copy: no name could match that folder)
        usable = _usable_folder_name(directory)
        return [
            Problem(
                f"the folder name '{directory.name}' cannot be an agent's name (letters, digits, '-' "
                f"and '_'): rename the folder ('{usable}'), or hide it ('.{directory.name}') to keep "
                "it out of the agents",
                layout.locate(("metadata", "name")),
            )
        ]
    return [
        Problem(
            f"{field_name} '{name}' must equal the folder name '{directory.name}' "
            f"(rename the folder or change the name)",
            layout.locate(("metadata", "name")),
        )
    ]


def _usable_folder_name(directory: Path) -> str:
    """A name like the folder's that an agent may have and no other folder beside it has."""
    from duragent.agents.spec import RESERVED_AGENT_NAME

    base = re.sub(r"[^A-Za-z0-9_-]+", "-", directory.name).strip("-_")[:60] or "agent"
    for number in range(1, 100):
        name = base if number == 1 else f"{base}-{number}"
        if name != RESERVED_AGENT_NAME and not (directory.parent / name).exists():
            return name
    return f"{base}-new"


def _tool_problems(data: dict[str, Any], layout: AgentFileLayout) -> list[Problem]:
    spec = data.get("spec")
    tools = spec.get("tools") if isinstance(spec, dict) else None
    known = ", ".join(BUILTIN_TOOLS)
    problems = []
    for name, path in _builtin_tool_entries(tools):
        if name not in BUILTIN_TOOLS:
            where = dotted(layout.file_path(path))
            problems.append(
                Problem(
                    f"unknown builtin tool '{name}' in {where}; known tools: {known}",
                    layout.locate(path),
                )
            )
    return problems + _cli_name_problems(tools, spec, layout)


def _cli_name_problems(tools: Any, spec: Any, layout: AgentFileLayout) -> list[Problem]:
    """A cli tool named like a builtin the agent has, or like another cli tool: every turn would
    fail on it (`tools_for` refuses two tools of one name)."""
    taken = {name for name, _path in _builtin_tool_entries(tools)}
    memory = spec.get("memory") if isinstance(spec, dict) else None
    if memory is True or (isinstance(memory, dict) and memory.get("enabled", True) is not False):
        taken.add("memory")  # (given to every agent with memory)
    problems = []
    for name, path in _cli_tool_entries(tools):
        if name in taken:
            where = dotted(layout.file_path(path))
            problems.append(
                Problem(
                    f"{where} '{name}' is already the name of another of the agent's tools; "
                    "give the cli tool another name",
                    layout.locate(path),
                )
            )
        taken.add(name)
    return problems


def _cli_tool_entries(tools: Any) -> list[tuple[str, FieldPath]]:
    """Each cli tool's name with the full-form path of its `name`, in either form of `spec.tools`."""
    base: FieldPath = ("spec", "tools")
    if isinstance(tools, dict):
        cli = tools.get("cli")
        items = [(i, item) for i, item in enumerate(cli)] if isinstance(cli, list) else []
        base = (*base, "cli")
    elif isinstance(tools, list):
        items = [
            (i, item) for i, item in enumerate(tools) if isinstance(item, dict) and item.get("type") == "cli"
        ]
    else:
        items = []
    return [
        (item["name"], (*base, i, "name"))
        for i, item in items
        if isinstance(item, dict) and isinstance(item.get("name"), str)
    ]


def web_search_problems(agent: Agent) -> list[Problem]:
    """A problem when the agent enables `web_search` but says nowhere where it searches.

    Not part of `load_agent`: duragent.yaml's `web_search` may serve every agent, which only
    the caller knows.
    """
    if agent.layout is None:
        return []
    raw = agent.layout.document.data
    data = normalise_shorthand(raw) if agent.layout.shorthand else raw
    tools = data.get("spec", {}).get("tools") if isinstance(data.get("spec"), dict) else None
    if _has_web_search_settings(tools):
        return []
    return [
        Problem(
            "web_search needs a search service: add tools.web_search with provider (searxng and "
            "its url, brave or tavily), or web_search in duragent.yaml; see docs/tools.md",
            agent.layout.locate(path),
        )
        for name, path in _builtin_tool_entries(tools)
        if name == "web_search"
    ]


def _has_web_search_settings(tools: Any) -> bool:
    """Whether `spec.tools` says where web_search searches (a mapping, or a list item with settings)."""
    if isinstance(tools, dict):
        return tools.get("web_search") is not None
    return isinstance(tools, list) and any(
        isinstance(item, dict) and item.get("name") == "web_search" and len(item) > 1 for item in tools
    )


def _builtin_tool_entries(tools: Any) -> list[tuple[str, FieldPath]]:
    """Each builtin tool name with its full-form path, in either the list or the mapping form."""
    base: FieldPath = ("spec", "tools")
    if isinstance(tools, dict):
        builtin = tools.get("builtin")
        items = list(enumerate(builtin)) if isinstance(builtin, list) else []
        return [(name, (*base, "builtin", i)) for i, name in items if isinstance(name, str)]
    if not isinstance(tools, list):
        return []
    entries: list[tuple[str, FieldPath]] = []
    for i, item in enumerate(tools):
        if isinstance(item, str):
            entries.append((item, (*base, i)))
        elif isinstance(item, dict) and item.get("type") != "cli" and isinstance(item.get("name"), str):
            entries.append((item["name"], (*base, i, "name")))
    return entries


def _read_prompts(
    data: dict[str, Any], directory: Path, layout: AgentFileLayout, problems: list[Problem]
) -> tuple[dict[str, str], dict[str, Path]]:
    spec = data.get("spec")
    texts: dict[str, str] = {}
    files: dict[str, Path] = {}
    for key in PROMPT_FIELDS:
        value = spec.get(key) if isinstance(spec, dict) else None
        if not isinstance(value, str):
            continue
        if not is_prompt_path(value):
            texts[key] = value
            continue
        path = ("spec", key)
        try:
            file = _prompt_file(directory, value.strip(), dotted(layout.file_path(path)))
            texts[key] = _read_markdown(file)
        except _PromptFileError as exc:
            problems.append(Problem(str(exc), layout.locate(path)))
            continue
        files[key] = file
    return texts, files


class _PromptFileError(Exception):
    """A prompt field names a file that cannot be used; the caller attaches the location."""


def _prompt_file(directory: Path, value: str, field_name: str) -> Path:
    file = (directory / value).resolve()
    if not file.is_relative_to(directory):
        raise _PromptFileError(
            f"{field_name} '{value}' points outside the agent folder; "
            f"prompt files must live inside {display_path(directory)}"
        )
    if file.is_dir():
        raise _PromptFileError(f"{field_name} '{value}' is a folder ({display_path(file)}), not a file")
    if not file.is_file():
        raise _PromptFileError(
            f"{field_name} file '{value}' does not exist (looked for {display_path(file)})"
        )
    return file


def _read_markdown(file: Path) -> str:
    """The file's text with any YAML front matter removed."""
    import frontmatter
    import yaml

    try:
        return str(frontmatter.loads(file.read_text(encoding="utf-8")).content)
    except UnicodeDecodeError:
        raise _PromptFileError(f"{display_path(file)} is not UTF-8 text") from None
    except OSError as exc:
        raise _PromptFileError(f"cannot read {display_path(file)}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise _PromptFileError(f"{display_path(file)}: invalid front matter: {exc}") from None


def _key_warnings(raw: dict[str, Any], layout: AgentFileLayout) -> list[Problem]:
    if not layout.shorthand:
        return unknown_key_warnings(AgentDocument, raw, layout.document)
    # In the shorthand, spec keys sit at the top level beside the metadata keys: walk the spec
    # model over everything but those, so warnings name the keys as the user wrote them.
    spec_part = {key: value for key, value in raw.items() if key not in _METADATA_KEYS}
    return unknown_key_warnings(AgentSpec, spec_part, layout.document, beside=_METADATA_KEYS)


def _reading_order(problem: Problem) -> tuple[int, int]:
    location = problem.location
    if location is None:
        return (0, 0)
    return (location.line or 0, location.column or 0)
