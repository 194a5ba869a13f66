"""Validate located YAML against pydantic models, with `file:line:column` errors and warnings.

Used for both duragent.yaml and agent.yaml: pydantic reports field paths, the YamlDocument
knows where each path is, and this module writes the sentence a user reads.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from duragent.errors import ConfigError, Problem
from duragent.interpolation import referenced_names
from duragent.yaml_source import FieldPath, YamlDocument

ModelT = TypeVar("ModelT", bound=BaseModel)


def validate_document(
    model: type[ModelT],
    doc: YamlDocument,
    data: Any = None,
    *,
    context: dict[str, Any] | None = None,
) -> tuple[ModelT, list[Problem]]:
    """Validate `data` (default: the whole document) as `model`; return it and key warnings."""
    payload = doc.data if data is None else data
    if not isinstance(payload, dict):
        raise ConfigError([Problem(f"the file must be a YAML mapping, got {_kind(payload)}", doc.locate(()))])
    try:
        value = model.model_validate(payload, context=context)
    except ValidationError as exc:
        raise ConfigError(validation_problems(exc, doc)) from None
    return value, unknown_key_warnings(model, payload, doc)


def validation_problems(exc: ValidationError, doc: YamlDocument, prefix: FieldPath = ()) -> list[Problem]:
    """One Problem per pydantic error, located through `doc`."""
    problems = []
    for error in exc.errors(include_url=False):
        loc = (*prefix, *error["loc"])
        emptied = doc.emptied.get(loc) if error.get("input") is None else None
        message = describe_error(error, loc) if emptied is None else _emptied(loc, emptied)
        problems.append(Problem(message, doc.locate(loc)))
    return problems


def _emptied(loc: FieldPath, reference: str) -> str:
    """Why a value written as references is missing: they expanded to nothing."""
    names = ", ".join(sorted(referenced_names(reference))) or "the variable"
    return (
        f"{dotted(loc)} is empty: {reference} expanded to nothing ({names} is not set here, or is set "
        "to nothing); set it, or give a default that is not empty"
    )


def dotted(path: FieldPath) -> str:
    """`("gateways", "external", 0, "name")` -> `gateways.external[0].name`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "the document"


def describe_error(error: Any, loc: FieldPath) -> str:
    """A sentence for one pydantic error: what is wrong, what was expected, what was given."""
    where = dotted(tuple(p for p in loc if not _is_union_tag(p)))
    kind = error["type"]
    given = error.get("input")
    if kind == "missing":
        return f"{where} is required"
    if kind in ("literal_error", "enum"):
        expected = error["ctx"]["expected"]
        return f"{where} must be {expected}, got {given!r}{_did_you_mean(given, expected)}"
    friendly = _FRIENDLY.get(kind)
    if friendly is not None:
        expected = friendly.format(**error.get("ctx", {}))
        return (
            f"{where} must be {expected}, got {given!r}"
            if _is_scalar(given)
            else f"{where} must be {expected}"
        )
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            return f"{where}: {message[len(prefix) :]}"
    message = message.replace("Input should be", "must be").replace("Input should have", "must have")
    if _is_scalar(given):
        return f"{where} {message[0].lower()}{message[1:]}, got {given!r}"
    return f"{where} {message[0].lower()}{message[1:]}, got {_kind(given)}"


def _did_you_mean(given: Any, expected: str) -> str:
    """` (did you mean 'openai'?)` when `given` is a near miss of one of the quoted choices."""
    if not isinstance(given, str):
        return ""
    return nearest_hint(given.lower(), re.findall(r"'([^']*)'", expected))


def nearest_hint(given: str, choices: Iterable[str]) -> str:
    """` (did you mean 'running'?)` when `given` is a near miss of one of `choices`, else ""."""
    import difflib  # here, not at import: only a wrong key or value needs it

    close = difflib.get_close_matches(given, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


_FRIENDLY = {
    "int_parsing": "a whole number",
    "int_type": "a whole number",
    "int_from_float": "a whole number",
    "float_parsing": "a number",
    "float_type": "a number",
    "bool_parsing": "true or false",
    "bool_type": "true or false",
    "string_type": "text",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "greater_than_equal": "at least {ge}",
    "greater_than": "greater than {gt}",
    "less_than_equal": "at most {le}",
    "less_than": "less than {lt}",
    "string_too_short": "at least {min_length} character(s) long",
    "string_pattern_mismatch": "text matching {pattern}",
}


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool))


def _is_union_tag(part: str | int) -> bool:
    return isinstance(part, str) and (part.startswith(("function-", "list[", "dict[")) or "[" in part)


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"


def unknown_key_warnings(
    model: type[BaseModel], data: Any, doc: YamlDocument, *, beside: tuple[str, ...] = ()
) -> list[Problem]:
    """Warnings for keys no model field accepts, each with a 'did you mean' where one is close.

    `beside`: keys that sit next to the model's at the top without being its (the metadata of an
    agent.yaml in the shorthand), offered as suggestions there too.
    """
    warnings: list[Problem] = []
    _walk_model(model, data, (), doc, warnings, beside)
    return warnings


def _field_names(model: type[BaseModel]) -> dict[str, Any]:
    names: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        names[name] = info.annotation
        for alias in (info.alias, info.validation_alias):
            if isinstance(alias, str):
                names[alias] = info.annotation
            elif alias is not None and hasattr(alias, "choices"):
                for choice in alias.choices:
                    if isinstance(choice, str):
                        names[choice] = info.annotation
    extra = getattr(model, "__extra_keys__", ())
    for key in extra:
        names.setdefault(key, Any)
    return names


def _walk_model(
    model: type[BaseModel],
    data: Any,
    path: FieldPath,
    doc: YamlDocument,
    out: list[Problem],
    beside: tuple[str, ...] = (),
) -> None:
    if not isinstance(data, dict) or model.model_config.get("extra") == "allow":
        return
    fields = _field_names(model)
    for key, value in data.items():
        if key not in fields:
            hint = nearest_hint(str(key), [*fields, *beside])
            where = dotted((*path, key))
            out.append(Problem(f"unknown key '{where}' is ignored{hint}", doc.locate((*path, key), key=True)))
            continue
        _walk_annotation(fields[key], value, (*path, key), doc, out)


def _walk_annotation(
    annotation: Any, value: Any, path: FieldPath, doc: YamlDocument, out: list[Problem]
) -> None:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        _walk_annotation(args[0], value, path, doc, out)
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        _walk_model(annotation, value, path, doc, out)
    elif origin in (list, tuple) and args and isinstance(value, list):
        for i, item in enumerate(value):
            _walk_annotation(args[0], item, (*path, i), doc, out)
    elif origin is dict and len(args) == 2 and isinstance(value, dict):
        for key, item in value.items():
            _walk_annotation(args[1], item, (*path, key), doc, out)
    elif origin in (typing.Union, types.UnionType):
        models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        if len(models) == 1 and isinstance(value, dict):
            _walk_model(models[0], value, path, doc, out)
        lists = [a for a in args if typing.get_origin(a) is list]
        if len(lists) == 1 and isinstance(value, list):
            _walk_annotation(lists[0], value, path, doc, out)
