"""Agent Skills: `SKILL.md` folders an agent loads on demand (discovery, validation, index, activity).

A skill is a folder holding `SKILL.md` (YAML front matter with `name` and `description`, then
Markdown instructions) and any files beside it. The context carries an index of the skills;
the `skill` tool (`duragent.tools.skill`) loads one skill's instructions when the model needs it.
"""
