"""Read YAML keeping where every key and value came from, expanding `${VAR}` in strings.

Configuration errors must say `file:line:column`; pydantic only knows field paths, so the
loader records the source position of every path it builds (`("services", "session",
"backend")` -> line 7, column 14) and the callers translate validation errors through it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from duragent.errors import ConfigError, Location, Problem
from duragent.interpolation import InterpolationError, expand

FieldPath = tuple[str | int, ...]


@dataclass
class YamlDocument:
    """Parsed YAML data plus the source location of each key and value in it."""

    data: Any
    source: str
    values: dict[FieldPath, Location] = field(default_factory=dict)
    keys: dict[FieldPath, Location] = field(default_factory=dict)
    referenced_env: set[str] = field(default_factory=set)

    def locate(self, path: FieldPath, *, key: bool = False) -> Location:
        """Location of `path`'s value (or key), falling back to the nearest enclosing node."""
        table = self.keys if key else self.values
        probe = tuple(path)
        while probe:
            if probe in table:
                return table[probe]
            if probe in self.values:
                return self.values[probe]
            probe = probe[:-1]
        return self.values.get((), Location(self.source, 1, 1))


def load_yaml_text(
    text: str, source: str, env: Mapping[str, str], *, interpolate: bool = True
) -> YamlDocument:
    """Parse `text` (named `source` in errors); every problem found is raised in one ConfigError."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        raise ConfigError([_syntax_problem(exc, source, text)]) from None
    finally:
        loader.dispose()
    doc = YamlDocument(data=None, source=source)
    if node is None:
        doc.data = {}
        return doc
    builder = _Builder(doc, env, interpolate)
    doc.data = builder.build(node, ())
    if builder.problems:
        raise ConfigError(builder.problems)
    return doc


def load_yaml_file(path: Path, env: Mapping[str, str], *, interpolate: bool = True) -> YamlDocument:
    """Read and parse a YAML file; an unreadable file is a ConfigError naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text") from None
    return load_yaml_text(text, str(path), env, interpolate=interpolate)


def _syntax_problem(exc: yaml.MarkedYAMLError, source: str, text: str) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    location = Location(source, mark.line + 1, mark.column + 1) if mark else Location(source)
    problem = exc.problem or "invalid YAML"
    if "'\\t'" in problem or _indented_with_tab(text, mark):
        return Problem("a tab character is not allowed for indentation in YAML; use spaces", location)
    detail = f" ({exc.context})" if exc.context else ""
    hint = ""
    if "mapping values are not allowed" in problem or "expected <block end>" in problem:
        hint = ": check the indentation of this line and the one above"
    return Problem(f"invalid YAML: {problem}{detail}{hint}", location)


def _indented_with_tab(text: str, mark: yaml.Mark | None) -> bool:
    if mark is None:
        return False
    lines = text.splitlines()
    return mark.line < len(lines) and lines[mark.line][: mark.column + 1].lstrip(" ").startswith("\t")


class _Builder:
    """Turns a composed YAML node tree into Python data, recording locations as it goes."""

    def __init__(self, doc: YamlDocument, env: Mapping[str, str], interpolate: bool):
        self.doc = doc
        self.env = env
        self.interpolate = interpolate
        self.problems: list[Problem] = []
        self._constructor = yaml.SafeLoader("")

    def _loc(self, node: yaml.Node) -> Location:
        mark = node.start_mark
        return Location(self.doc.source, mark.line + 1, mark.column + 1)

    def build(self, node: yaml.Node, path: FieldPath) -> Any:
        self.doc.values[path] = self._loc(node)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        assert isinstance(node, yaml.ScalarNode)
        return self._scalar(node)

    def _mapping(self, node: yaml.MappingNode, path: FieldPath) -> dict[Any, Any]:
        self._constructor.flatten_mapping(node)
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self._constructor.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                self.problems.append(Problem("mapping keys must be plain scalars", self._loc(key_node)))
                continue
            key = str(key) if not isinstance(key, str) else key
            if key in result:
                self.problems.append(Problem(f"duplicate key '{key}'", self._loc(key_node)))
            self.doc.keys[(*path, key)] = self._loc(key_node)
            result[key] = self.build(value_node, (*path, key))
        return result

    def _scalar(self, node: yaml.ScalarNode) -> Any:
        if not self.interpolate or "$" not in node.value or node.tag == "tag:yaml.org,2002:binary":
            return self._constructor.construct_object(node, deep=True)
        try:
            value = expand(node.value, self.env, self.doc.referenced_env)
        except InterpolationError as exc:
            self.problems.append(Problem(str(exc), self._loc(node)))
            return None
        if node.style is None:
            # Plain scalars get their type from the expanded text, so `port: ${PORT:-8080}`
            # is the integer 8080 and an unquoted `${EMPTY:-}` is null, as YAML would read it.
            tag = self._constructor.resolve(yaml.ScalarNode, value, (True, False))  # type: ignore[no-untyped-call]
            return self._constructor.construct_object(
                yaml.ScalarNode(tag, value, node.start_mark, node.end_mark), deep=True
            )
        return value
