"""Read YAML keeping where every key and value came from, expanding `${VAR}` in strings.

Configuration errors must say `file:line:column`; pydantic only knows field paths, so the
loader records the source position of every path it builds (`("services", "session",
"backend")` -> line 7, column 14) and the callers translate validation errors through it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from duragent.errors import ConfigError, Location, Problem
from duragent.interpolation import InterpolationError, expand, referenced_names

FieldPath = tuple[str | int, ...]
#: Largest configuration file read (duragent.yaml, agent.yaml, policy.yaml): 1 MiB.
MAX_FILE_BYTES = 1024 * 1024
#: Deepest nesting of mappings and lists (after aliases are expanded).
MAX_DEPTH = 64
#: Values an alias may add beyond those written out: a "billion laughs" stops here.
MAX_ALIAS_VALUES = 10_000
_BRACKET_RUN = re.compile(rf"(?:[\[{{][ \t]*){{{MAX_DEPTH + 1}}}")
#: A value that is one reference and nothing else (`${DATABASE_URL}`, `${S3_BUCKET:-artifacts}`).
_WHOLE_REFERENCE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?-[^}]*)?\}")


class _LimitExceeded(Exception):
    """A document that attacks the parser: too deep, too many aliases, an alias inside itself."""

    def __init__(self, message: str, location: Location):
        super().__init__(message)
        self.problem = Problem(message, location)


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing to compose nodes nested deeper than MAX_DEPTH.

    Composition is PyYAML's only recursive step: without the cap, `[[[[...` 100,000 levels deep
    would end in a RecursionError instead of an error message.
    """

    def __init__(self, stream: str, source: str):
        super().__init__(stream)
        self.source = source
        self.depth = 0
        #: (id of the parent node, key node id or item index) -> where an alias was written.
        self.alias_sites: dict[tuple[int, int], Location] = {}

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise _LimitExceeded(
                    f"nested more than {MAX_DEPTH} levels deep",
                    Location(self.source, mark.line + 1, mark.column + 1),
                )
            if parent is not None and self.check_event(yaml.AliasEvent):
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                site = index if isinstance(index, int) else id(index)
                self.alias_sites[(id(parent), site)] = Location(self.source, mark.line + 1, mark.column + 1)
            node: yaml.Node | None = super().compose_node(parent, index)
            return node
        finally:
            self.depth -= 1


@dataclass
class YamlDocument:
    """Parsed YAML data plus the source location of each key and value in it."""

    data: Any
    source: str
    values: dict[FieldPath, Location] = field(default_factory=dict)
    keys: dict[FieldPath, Location] = field(default_factory=dict)
    referenced_env: set[str] = field(default_factory=set)
    #: The names of `referenced_env` referenced outside the values `unset_later` accepts.
    referenced_now: set[str] = field(default_factory=set)
    #: Where each name of `referenced_env` is referenced (the paths of the values naming it).
    reference_paths: dict[str, set[FieldPath]] = field(default_factory=dict)
    #: The names of `referenced_env` referenced inside a longer value somewhere
    #: (`postgresql://app:${DB_PASS}@db/x`), not as a whole value.
    embedded_env: set[str] = field(default_factory=set)
    #: `${NAME}` references to unset variables that the loader was told to leave for later, by
    #: path (each value keeps its unexpanded text): whoever uses such a value raises these.
    unset_later: dict[FieldPath, Problem] = field(default_factory=dict)
    #: Unquoted values that were only references and expanded to nothing (so YAML reads them as
    #: null), by path: the reference as written, for an error that says why the value is missing.
    emptied: dict[FieldPath, str] = field(default_factory=dict)

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


#: Which values (by path) may keep a reference to an unset variable until they are used.
LaterPaths = Callable[[FieldPath], bool]


def load_yaml_text(
    text: str,
    source: str,
    env: Mapping[str, str],
    *,
    interpolate: bool = True,
    unset_later: LaterPaths | None = None,
) -> YamlDocument:
    """Parse `text` (named `source` in errors); every problem found is raised in one ConfigError.

    A reference to an unset variable is an error, except in values whose path `unset_later`
    accepts: those keep their text and the problem goes to the document's `unset_later`.

    Documents that attack the parser (over MAX_FILE_BYTES, nested deeper than MAX_DEPTH, alias
    bombs, aliases inside themselves, NUL and other control characters) are errors with a location.
    """
    if len(text) > MAX_FILE_BYTES:
        raise ConfigError(
            f"{source}: the file is larger than {MAX_FILE_BYTES // 1024} KiB; is it the right file?"
        )
    run = _BRACKET_RUN.search(text)
    if run is not None:
        # PyYAML scans a run of opening brackets to its end before composing any of it: stop it here.
        line = text.count("\n", 0, run.start()) + 1
        column = run.start() - (text.rfind("\n", 0, run.start()) + 1) + 1
        raise ConfigError(f"nested more than {MAX_DEPTH} levels deep", Location(source, line, column))
    try:
        loader = _BoundedLoader(text, source)
    except yaml.reader.ReaderError as exc:
        raise ConfigError([_character_problem(exc, source, text)]) from None
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        raise ConfigError([_syntax_problem(exc, source, text)]) from None
    except _LimitExceeded as exc:
        raise ConfigError([exc.problem]) from None
    finally:
        loader.dispose()
    doc = YamlDocument(data=None, source=source)
    if node is None:
        doc.data = {}
        return doc
    builder = _Builder(doc, env, interpolate, loader.alias_sites, unset_later)
    try:
        doc.data = builder.build(node, ())
    except _LimitExceeded as exc:
        raise ConfigError([exc.problem]) from None
    if builder.problems:
        raise ConfigError(builder.problems)
    return doc


def load_yaml_file(
    path: Path, env: Mapping[str, str], *, interpolate: bool = True, unset_later: LaterPaths | None = None
) -> YamlDocument:
    """Read and parse a YAML file (see `load_yaml_text`); an unreadable file is a ConfigError naming it."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(
            f"{path}: the file is larger than {MAX_FILE_BYTES // 1024} KiB; is it the right file?"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: the file is not UTF-8 text") from None
    return load_yaml_text(text, str(path), env, interpolate=interpolate, unset_later=unset_later)


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


def _character_problem(exc: yaml.reader.ReaderError, source: str, text: str) -> Problem:
    before = text[: exc.position]
    line = before.count("\n") + 1
    column = exc.position - (before.rfind("\n") + 1) + 1
    code = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "\0")
    what = "a NUL byte" if code == 0 else f"the control character U+{code:04X}"
    return Problem(f"{what} is not allowed in YAML; remove it", Location(source, line, column))


def _indented_with_tab(text: str, mark: yaml.Mark | None) -> bool:
    if mark is None:
        return False
    lines = text.splitlines()
    return mark.line < len(lines) and lines[mark.line][: mark.column + 1].lstrip(" ").startswith("\t")


class _Builder:
    """Turns a composed YAML node tree into Python data, recording locations as it goes."""

    def __init__(
        self,
        doc: YamlDocument,
        env: Mapping[str, str],
        interpolate: bool,
        alias_sites: dict[tuple[int, int], Location] | None = None,
        unset_later: LaterPaths | None = None,
    ):
        self.doc = doc
        self.unset_later = unset_later
        self.alias_sites = alias_sites or {}
        self.env = env
        self.interpolate = interpolate
        self.problems: list[Problem] = []
        self._constructor = yaml.SafeLoader("")
        self._building: set[int] = set()
        self._seen: set[int] = set()
        self._built = 0

    def _loc(self, node: yaml.Node) -> Location:
        mark = node.start_mark
        return Location(self.doc.source, mark.line + 1, mark.column + 1)

    def build(self, node: yaml.Node, path: FieldPath, site: Location | None = None) -> Any:
        """`node` as Python data; `site` is where the alias that brought it in was written, if any."""
        self._check_limits(node, path, site)
        self.doc.values[path] = self._loc(node)
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, path)
        self._building.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path, site)
            assert isinstance(node, yaml.SequenceNode)
            return [
                self.build(item, (*path, i), site or self.alias_sites.get((id(node), i)))
                for i, item in enumerate(node.value)
            ]
        finally:
            self._building.discard(id(node))

    def _check_limits(self, node: yaml.Node, path: FieldPath, site: Location | None) -> None:
        """Stop alias bombs, aliases inside themselves and alias chains nested too deep."""
        where = site or self._loc(node)
        if id(node) in self._building:
            raise _LimitExceeded(
                "an alias refers to a node that contains it (a self-referencing alias)", where
            )
        if len(path) > MAX_DEPTH:
            raise _LimitExceeded(f"nested more than {MAX_DEPTH} levels deep (through aliases)", where)
        self._built += 1
        self._seen.add(id(node))
        if self._built - len(self._seen) > MAX_ALIAS_VALUES:
            raise _LimitExceeded(
                f"too many aliases: they expand to more than {MAX_ALIAS_VALUES} values (an alias bomb?)",
                where,
            )

    def _mapping(self, node: yaml.MappingNode, path: FieldPath, site: Location | None) -> dict[Any, Any]:
        self._flatten(node, path)
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.problems.append(Problem("mapping keys must be plain scalars", self._loc(key_node)))
                continue
            key = self._construct(key_node)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                self.problems.append(Problem("mapping keys must be plain scalars", self._loc(key_node)))
                continue
            key = str(key) if not isinstance(key, str) else key
            if key in result:
                self.problems.append(Problem(f"duplicate key '{key}'", self._loc(key_node)))
            self.doc.keys[(*path, key)] = self._loc(key_node)
            result[key] = self.build(
                value_node, (*path, key), site or self.alias_sites.get((id(node), id(key_node)))
            )
        return result

    def _flatten(self, node: yaml.MappingNode, path: FieldPath) -> None:
        """Apply `<<` merge keys, refusing a merge that includes the mapping itself."""
        merging = [value for key, value in node.value if key.tag == "tag:yaml.org,2002:merge"]
        pending = list(merging)
        visited: set[int] = set()
        while pending:
            current = pending.pop()
            if current is node or id(current) in self._building:
                raise _LimitExceeded(
                    "a merge key (<<) refers to a mapping that contains it (a self-referencing alias)",
                    self._loc(current),
                )
            if id(current) in visited:
                continue
            visited.add(id(current))
            children = current.value if isinstance(current, (yaml.MappingNode, yaml.SequenceNode)) else []
            for child in children:
                pending.extend(child if isinstance(child, tuple) else (child,))
            if len(visited) > MAX_ALIAS_VALUES:
                raise _LimitExceeded(
                    f"too many aliases: a merge key (<<) expands to more than {MAX_ALIAS_VALUES} values",
                    self._loc(node),
                )
        if merging:
            try:
                self._constructor.flatten_mapping(node)
            except yaml.MarkedYAMLError as exc:
                mark = exc.problem_mark or node.start_mark
                self.problems.append(
                    Problem(
                        f"invalid merge key: {exc.problem}",
                        Location(self.doc.source, mark.line + 1, mark.column + 1),
                    )
                )
                node.value = [(k, v) for k, v in node.value if k.tag != "tag:yaml.org,2002:merge"]

    def _scalar(self, node: yaml.ScalarNode, path: FieldPath) -> Any:
        if not self.interpolate or "$" not in node.value or node.tag == "tag:yaml.org,2002:binary":
            return self._construct(node)
        names = referenced_names(node.value)
        if self.unset_later is None or not self.unset_later(path):
            self.doc.referenced_now.update(names)
        whole = _WHOLE_REFERENCE.fullmatch(node.value.strip())
        for name in names:
            self.doc.reference_paths.setdefault(name, set()).add(path)
            if whole is None or whole["name"] != name:
                self.doc.embedded_env.add(name)
        try:
            value = expand(node.value, self.env, self.doc.referenced_env)
        except InterpolationError as exc:
            return self._unexpandable(node, path, exc)
        if node.style is None:
            # Plain scalars get their type from the expanded text, so `port: ${PORT:-8080}`
            # is the integer 8080 and an unquoted `${EMPTY:-}` is null, as YAML would read it.
            if not value.strip():
                self.doc.emptied[path] = node.value
            tag = self._constructor.resolve(yaml.ScalarNode, value, (True, False))  # type: ignore[no-untyped-call]
            return self._construct(yaml.ScalarNode(tag, value, node.start_mark, node.end_mark))
        return value

    def _unexpandable(self, node: yaml.ScalarNode, path: FieldPath, exc: InterpolationError) -> Any:
        """None and a problem; for an unset variable where `unset_later` allows, the text as written
        (never a secret: an unset variable has no value) and the problem kept for later."""
        problem = Problem(str(exc), self._loc(node))
        if exc.unset is not None and self.unset_later is not None and self.unset_later(path):
            self.doc.unset_later[path] = problem
            # every other reference in the value is still read, so it stays a secret to redact
            self.doc.referenced_env.update(referenced_names(node.value))
            return node.value
        self.problems.append(problem)
        return None

    def _construct(self, node: yaml.ScalarNode) -> Any:
        """The scalar's value; a problem at its place (and None) for a tag YAML cannot build
        (`!foo`, `!!python/object`, `!!int abc`, `!!timestamp nope`)."""
        try:
            return self._constructor.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as exc:
            self.problems.append(Problem(f"cannot read this value: {exc.problem}", self._loc(node)))
        except (ValueError, TypeError, AttributeError, OverflowError, yaml.YAMLError):
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            self.problems.append(Problem(f"cannot read {node.value!r} as {tag}", self._loc(node)))
        return None
