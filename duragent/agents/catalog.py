"""The agents of a workspace: the folders under the agents directory, loaded by name."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from duragent.agents.loader import AGENT_FILENAME, Agent, AgentFileLayout, discover_agents, load_agent
from duragent.agents.spec import check_new_agent_name, is_shorthand
from duragent.errors import ConfigError, NotFound, Problem, UsageError
from duragent.ids import check_name
from duragent.yaml_source import FieldPath, load_yaml_text

if TYPE_CHECKING:
    # `duragent init`'s module (templates, provider probes) is imported only by the copies that
    # write files: the server loads agents through this module at every start.
    from duragent.scaffold import FileAction


class AgentNotFound(NotFound):
    """No agent folder of that name; the message lists the agents that do exist."""

    def __init__(self, name: str, known: Sequence[str], agents_dir: Path):
        self.name = name
        self.known = list(known)
        where = (
            f"known agents: {', '.join(self.known)}" if self.known else f"there are no agents in {agents_dir}"
        )
        super().__init__(f"no agent named '{name}' ({where})")


class InvalidAgent(ConfigError):
    """An agent folder whose definition has problems; `name` is the folder's name."""

    def __init__(self, name: str, directory: Path, problems: Sequence[Problem]):
        super().__init__(problems)
        self.name = name
        self.directory = directory


class AgentCatalog:
    """Loads the agents stored as folders in `agents_dir`, reading files on every call."""

    def __init__(self, agents_dir: Path, env: Mapping[str, str] | None = None):
        self.agents_dir = agents_dir
        self._env = env

    def names(self) -> list[str]:
        """Names of every agent folder, sorted."""
        return [directory.name for directory in discover_agents(self.agents_dir)]

    def directory(self, name: str) -> Path:
        """The folder of agent `name`; raises AgentNotFound when there is no such agent."""
        check_name(name, "agent name")
        directory = self.agents_dir / name
        if not (directory / AGENT_FILENAME).is_file():
            raise AgentNotFound(name, self.names(), self.agents_dir)
        return directory

    def load(self, name: str) -> tuple[Agent, list[Problem]]:
        """Agent `name` and the warnings its files produced; raises AgentNotFound or InvalidAgent."""
        directory = self.directory(name)
        return _load(directory, self._env)

    def get(self, name: str) -> Agent:
        """Agent `name`; raises AgentNotFound (listing known names) or InvalidAgent."""
        return self.load(name)[0]

    def load_all(self) -> tuple[list[Agent], list[ConfigError]]:
        """Every agent that loads, and one InvalidAgent per folder that does not."""
        agents: list[Agent] = []
        errors: list[ConfigError] = []
        for directory in discover_agents(self.agents_dir):
            try:
                agents.append(_load(directory, self._env)[0])
            except InvalidAgent as exc:
                errors.append(exc)
        return agents, errors

    def copy(
        self,
        source: str,
        name: str,
        *,
        provider: str | None = None,
        model: str | None = None,
        force: bool = False,
    ) -> list[FileAction]:
        """Create agent `name` as a copy of agent `source`, with its name (and model) edited in place.

        agent.yaml is edited as text, so comments and layout survive. Existing files are left
        alone unless `force`, which saves a `.bak` copy first. Backups are not copied.
        """
        from duragent.scaffold import write_file

        check_new_agent_name(name)
        origin = self.get(source)
        target = self.agents_dir / name
        changes: list[tuple[FieldPath, str]] = [(("metadata", "name"), name)]
        if provider is not None:
            changes.append((("spec", "model", "provider"), provider))
        if model is not None:
            changes.append((("spec", "model", "name"), model))
        definition = edit_scalars(origin.source.read_text(encoding="utf-8"), str(origin.source), changes)
        actions = [write_file(target / AGENT_FILENAME, definition, force=force)]
        for file in sorted(origin.directory.rglob("*")):
            if file.is_file() and file.name != AGENT_FILENAME and ".bak" not in file.name:
                actions.append(_copy_file(file, target / file.relative_to(origin.directory), force=force))
        return actions


def _load(directory: Path, env: Mapping[str, str] | None) -> tuple[Agent, list[Problem]]:
    try:
        return load_agent(directory, env)
    except ConfigError as exc:
        raise InvalidAgent(directory.name, directory, exc.problems) from None


def edit_scalars(text: str, source: str, changes: Sequence[tuple[FieldPath, str]]) -> str:
    """Replace the scalar values at full-form paths in agent.yaml text, leaving every other byte."""
    doc = load_yaml_text(text, source, {}, interpolate=False)
    layout = AgentFileLayout(doc, is_shorthand(doc.data))
    lines = text.splitlines(keepends=True)
    for path, value in changes:
        where = layout.file_path(path)
        location = doc.values.get(where)
        if location is None or location.line is None or location.column is None:
            raise UsageError(f"{source}: cannot set {'.'.join(map(str, where))}: the key is not in the file")
        index, column = location.line - 1, location.column - 1
        line = lines[index]
        end = _scalar_end(line, column)
        lines[index] = line[:column] + _yaml_scalar(value) + line[end:]
    return "".join(lines)


def _scalar_end(line: str, start: int) -> int:
    """Index just past the single-line scalar starting at `start` (quoted or plain)."""
    quote = line[start : start + 1]
    if quote in ("'", '"'):
        index = start + 1
        while index < len(line):
            if line[index] == "\\" and quote == '"':
                index += 2
                continue
            if line[index] == quote:
                if quote == "'" and line[index + 1 : index + 2] == "'":
                    index += 2
                    continue
                return index + 1
            index += 1
        return len(line.rstrip("\r\n"))
    body = line[start:].rstrip("\r\n")
    comment = body.find(" #")
    if comment >= 0:
        body = body[:comment]
    return start + len(body.rstrip())


def _yaml_scalar(value: str) -> str:
    """`value` written so YAML reads back the same string: plain when safe, else JSON-quoted."""
    import yaml

    plain_safe = value.strip() == value and " #" not in value and "\n" not in value
    if plain_safe and value and yaml.safe_load(value) == value:
        return value
    return json.dumps(value)


def _copy_file(source: Path, target: Path, *, force: bool) -> FileAction:
    """Copy one file of an agent folder (text through write_file; executable bits kept)."""
    from duragent.scaffold import FileAction, write_file

    try:
        content = source.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        # Binary files are copied as bytes, but only where nothing exists yet.
        if target.exists():
            return FileAction(target, "skipped")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
        return FileAction(target, "created")
    action = write_file(target, content, force=force)
    if action.action != "skipped":
        shutil.copymode(source, target)
    return action
