"""`skill`: load one skill's instructions (and the list of its files) on demand, or list the skills."""

from __future__ import annotations

from pydantic import Field

from duragent.skills.discovery import SkillSet
from duragent.skills.skill import Skill
from duragent.tools.base import Tool, ToolArgs, ToolContext, ToolResult

#: Files listed per skill; a folder with more says how many were left out.
MAX_LISTED_FILES = 200


class SkillArgs(ToolArgs):
    """Arguments of `skill`."""

    name: str | None = Field(None, description="The skill to load; leave it out to list every skill.")


class SkillTool(Tool[SkillArgs]):
    """Load a skill's instructions; its folder is readable with `read_file` and `list_files`."""

    name = "skill"
    description = (
        "Load the instructions of one of your skills by name, with the list of files in its "
        "folder (read them with read_file using the folder path given). Without a name, list "
        "every skill with its description."
    )
    Args = SkillArgs

    def __init__(self, skills: SkillSet):
        self.skills = skills

    async def run(self, args: SkillArgs, ctx: ToolContext) -> ToolResult:
        """The skill's instructions and files, the list of skills, or a failure naming the known ones."""
        if args.name is None:
            lines = [f"- {skill.name}: {skill.description}" for skill in self.skills.sorted()]
            return ToolResult(True, "\n".join(lines) or "(no skills)", {"skills": sorted(self.skills.skills)})
        skill = self.skills.skills.get(args.name)
        if skill is None:
            known = ", ".join(sorted(self.skills.skills)) or "none"
            return ToolResult(False, f"unknown skill {args.name!r}; skills: {known}")
        allowed = list(skill.allowed_tools) if skill.allowed_tools is not None else None
        # (`allowed_tools` is kept with the result: the restriction holds as loaded, see skills/active.py)
        return ToolResult(
            True,
            describe(skill),
            {"skill": skill.name, "folder": str(skill.directory), "allowed_tools": allowed},
        )

    def invocation(self, args: SkillArgs, ctx: ToolContext) -> str:
        """The skill's name (`list` without one)."""
        return args.name or "list"


def describe(skill: Skill) -> str:
    """What the model reads when it loads `skill`: folder, instructions, files, restriction."""
    files = skill.files(MAX_LISTED_FILES + 1)
    parts = [
        f"# Skill: {skill.name}",
        f"Folder: {skill.directory}",
        skill.instructions or "(no instructions)",
    ]
    if files:
        listed = "\n".join(f"- {name}" for name in files[:MAX_LISTED_FILES])
        if len(files) > MAX_LISTED_FILES:
            listed += f"\n- (more files: list_files {skill.directory} to see them all)"
        parts.append(f"Files in the skill's folder (relative to {skill.directory}):\n{listed}")
    if skill.allowed_tools is not None:
        allowed = " ".join(skill.allowed_tools) or "(none)"
        parts.append(f"While this skill is active, this turn may call only: {allowed} (and skill).")
    return "\n\n".join(parts)
