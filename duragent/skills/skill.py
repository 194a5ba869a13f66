"""One skill: parse and validate a `SKILL.md` folder (the Agent Skills format), errors with file:line."""

from __future__ import annotations

import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from duragent.errors import ConfigError, Location
from duragent.validation import validate_document
from duragent.yaml_source import load_yaml_text

SKILL_FILE = "SKILL.md"
MAX_NAME_LENGTH = 64
MAX_DESCRIPTION_LENGTH = 1024
#: Lowercase letters and digits in words joined by single hyphens (no leading, trailing or double `-`).
NAME_PATTERN = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
#: Largest SKILL.md read (the instructions go to the model whole).
MAX_SKILL_BYTES = 256 * 1024

Scope = Literal["agent", "workspace"]


class SkillFrontmatter(BaseModel):
    """The YAML front matter of a SKILL.md (the Agent Skills specification's fields)."""

    model_config = ConfigDict(defer_build=True, extra="ignore", frozen=True, populate_by_name=True)

    name: str
    description: str = Field(min_length=1, max_length=MAX_DESCRIPTION_LENGTH)
    license: str | None = None
    compatibility: str | None = Field(None, max_length=500)
    metadata: dict[str, str] = {}
    allowed_tools: list[str] | None = Field(None, alias="allowed-tools")

    @field_validator("name")
    @classmethod
    def _name_form(cls, value: str) -> str:
        if len(value) > MAX_NAME_LENGTH:
            raise ValueError(f"must be at most {MAX_NAME_LENGTH} characters, got {len(value)}")
        if not NAME_PATTERN.fullmatch(value):
            raise ValueError(
                f"{value!r} must be lowercase letters, digits and single hyphens (not at the start or end)"
            )
        return value

    @field_validator("description")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()

    @field_validator("metadata", mode="before")
    @classmethod
    def _scalars_as_text(cls, value: Any) -> Any:
        # The specification says text to text; `version: 1.0` is common enough to read as "1.0".
        if isinstance(value, dict):
            return {
                key: str(item) if isinstance(item, (int, float, bool)) else item
                for key, item in value.items()
            }
        return value

    @field_validator("allowed_tools", mode="before")
    @classmethod
    def _words(cls, value: Any) -> Any:
        # The specification writes it as one space-separated string; a YAML list reads as well.
        if isinstance(value, str):
            return value.split()
        return value


@dataclass(frozen=True)
class Skill:
    """A valid skill: its front matter, its instructions and where its folder is."""

    name: str
    description: str
    directory: Path
    instructions: str
    scope: Scope = "workspace"
    license: str | None = None
    compatibility: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    #: Tool patterns the turn is narrowed to while the skill is active; None: no restriction.
    allowed_tools: tuple[str, ...] | None = None

    @property
    def path(self) -> Path:
        """The skill's SKILL.md."""
        return self.directory / SKILL_FILE

    def files(self, limit: int = 200) -> list[str]:
        """The other files of the folder, relative and sorted (hidden ones and SKILL.md left out)."""
        found = []
        for path in sorted(self.directory.rglob("*")):
            relative = path.relative_to(self.directory)
            if any(part.startswith(".") for part in relative.parts) or not path.is_file():
                continue
            if relative.as_posix() != SKILL_FILE:
                found.append(relative.as_posix())
            if len(found) >= limit:
                break
        return found


def load_skill(directory: Path, *, scope: Scope = "workspace", shown: str | None = None) -> Skill:
    """Read and validate the skill in `directory`; ConfigError lists every problem with file:line.

    `shown` is how the SKILL.md path appears in messages (default: the path as given).
    """
    from frontmatter.default_handlers import YAMLHandler

    path = directory / SKILL_FILE
    source = shown or str(path)
    text = _read(path, source)
    handler = YAMLHandler()
    if not handler.detect(text):
        raise ConfigError(
            "a SKILL.md must start with YAML front matter between `---` lines "
            "(name and description at least)",
            Location(source, 1, 1),
        )
    # The front matter text starts right after the first `---` (the rest of that line included),
    # so its line numbers are the file's.
    try:
        yaml_text, body = handler.split(text)
    except ValueError:
        raise ConfigError(
            "the front matter is not closed: add a `---` line after its last field", Location(source, 1, 1)
        ) from None
    doc = load_yaml_text(yaml_text, source, {}, interpolate=False)
    front, _warnings = validate_document(SkillFrontmatter, doc)
    if front.name != directory.name:
        raise ConfigError(
            f"name {front.name!r} must equal the folder name {directory.name!r} "
            "(rename the folder or change the name)",
            doc.locate(("name",)),
        )
    return Skill(
        name=front.name,
        description=front.description,
        directory=directory,
        instructions=body.strip(),
        scope=scope,
        license=front.license,
        compatibility=front.compatibility,
        metadata=dict(front.metadata),
        allowed_tools=tuple(front.allowed_tools) if front.allowed_tools is not None else None,
    )


def _read(path: Path, source: str) -> str:
    try:
        status = path.stat()
        if not stat.S_ISREG(status.st_mode):
            # a named pipe or a device (a link to /dev/zero) would be read forever
            raise ConfigError("not a regular file", Location(source))
        if status.st_size > MAX_SKILL_BYTES:
            raise ConfigError(f"{source}: larger than {MAX_SKILL_BYTES // 1024} KiB")
        return path.read_text(encoding="utf-8-sig")  # (an editor on Windows may start it with a BOM)
    except FileNotFoundError:
        raise ConfigError(f"{source}: no {SKILL_FILE} in this folder") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror or exc}") from None
