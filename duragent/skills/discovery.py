"""Find an agent's skills: its own `skills/` folder over the workspace-wide `skills/` folder."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from duragent.errors import ConfigError, Location, Problem
from duragent.file_stamps import Stamp
from duragent.file_stamps import stamp as stamp_of
from duragent.skills.skill import SKILL_FILE, Scope, Skill, load_skill

log = logging.getLogger(__name__)

SKILLS_FOLDER = "skills"


@dataclass(frozen=True)
class SkillSet:
    """The skills an agent sees, by name, and the problems of the folders that are not valid skills."""

    skills: dict[str, Skill] = field(default_factory=dict)
    problems: tuple[Problem, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.skills)

    def sorted(self) -> list[Skill]:
        """The skills in name order."""
        return [self.skills[name] for name in sorted(self.skills)]


def agent_skills_dir(agent_dir: Path, skills_dir: str | None = None) -> Path:
    """The agent's own skills folder: `spec.skills_dir` (relative to the agent folder) or `skills/`."""
    return agent_dir / (skills_dir or SKILLS_FOLDER)


def shared_skills_dir(data_dir: Path) -> Path:
    """The workspace-wide skills folder, `<data dir>/skills/`."""
    return data_dir / SKILLS_FOLDER


class SkillCache:
    """Parsed SKILL.md files by path, kept while the file is unchanged (same inode, size, mtime).

    A turn rescans the skill folders; parsing YAML is what costs (about 2 ms a skill), so only
    new and edited skills are parsed again.
    """

    def __init__(self) -> None:
        self._entries: dict[tuple[Path, Scope], tuple[tuple[int, int, int], Skill | list[Problem]]] = {}

    def load(self, folder: Path, scope: Scope) -> Skill | list[Problem]:
        """The skill in `folder`, or its problems; parsed again only when SKILL.md changed."""
        path = folder / SKILL_FILE
        try:
            stat = path.stat()
        except OSError:
            return [Problem(f"no {SKILL_FILE} in this skill folder", Location(_shown(path)))]
        key = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        cached = self._entries.get((folder, scope))
        if cached is not None and cached[0] == key:
            return cached[1]
        outcome: Skill | list[Problem]
        try:
            outcome = load_skill(folder, scope=scope, shown=_shown(path))
        except ConfigError as exc:
            outcome = list(exc.problems)
        except Exception as exc:
            # one skill, however broken, must not break the turns of every agent that sees it
            log.exception("skill %s could not be read", path)
            outcome = [Problem(f"cannot be read: {exc}", Location(_shown(path)))]
        self._entries[(folder, scope)] = (key, outcome)
        return outcome


def scan_folder(
    folder: Path, scope: Scope, cache: SkillCache | None = None
) -> tuple[list[Skill], list[Problem]]:
    """Every skill in the subfolders of `folder` and a problem for each invalid one (hidden ones skipped)."""
    if not folder.is_dir():
        return [], []
    cache = cache or SkillCache()
    skills: list[Skill] = []
    problems: list[Problem] = []
    for child in sorted(folder.iterdir()):
        if not child.is_dir() or child.name.startswith("."):
            continue
        outcome = cache.load(child, scope)
        if isinstance(outcome, Skill):
            skills.append(outcome)
        else:
            problems += outcome
    return skills, problems


def _shown(path: Path) -> str:
    from duragent.agents.loader import display_path

    return display_path(path.absolute())


def discover_skills(
    agent_dir: Path | None,
    data_dir: Path | None,
    skills_dir: str | None = None,
    *,
    cache: SkillCache | None = None,
) -> SkillSet:
    """The skills of an agent: the workspace's, then its own (an agent's skill wins on a name clash).

    `cache` keeps parsed skills between calls (the runtime passes one; a command needs none).
    """
    folders: list[tuple[Path, Scope]] = []
    if data_dir is not None:
        folders.append((shared_skills_dir(data_dir), "workspace"))
    if agent_dir is not None:
        folders.append((agent_skills_dir(agent_dir, skills_dir), "agent"))
    skills: dict[str, Skill] = {}
    problems: list[Problem] = []
    for folder, scope in folders:
        found, wrong = scan_folder(folder, scope, cache)
        problems += wrong
        skills.update((skill.name, skill) for skill in found)
    return SkillSet(skills, tuple(problems))


def skill_stamps(folders: Iterable[Path]) -> tuple[tuple[str, Stamp], ...]:
    """What scanning `folders` for skills depends on, stamped (`duragent.file_stamps`): each
    folder and the SKILL.md of each entry in it. Taken before a scan, they show whether its
    result still holds: a skill added, removed or renamed changes its folder's stamp, an edit its
    SKILL.md's."""
    stamps: list[tuple[str, Stamp]] = []
    for folder in folders:
        path = os.fspath(folder)
        current = stamp_of(path)
        stamps.append((path, current))
        if not stat.S_ISDIR(current[0]):
            continue
        try:
            with os.scandir(path) as entries:
                names = sorted(entry.name for entry in entries if not entry.name.startswith("."))
        except OSError:
            continue
        for name in names:
            skill_file = os.path.join(path, name, SKILL_FILE)
            stamps.append((skill_file, stamp_of(skill_file)))
    return tuple(stamps)


class ProblemLog:
    """Logs each skill or tool-folder problem once (a turn rescans the folders every time)."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def warn(self, problems: Iterable[Problem], what: str, skipping: str = "skipping invalid") -> None:
        """Log `problems` not logged before as warnings (`what`: "skill", "tool folder")."""
        for problem in problems:
            text = str(problem)
            if text not in self._seen:
                self._seen.add(text)
                log.warning("%s %s: %s", skipping, what, text)
