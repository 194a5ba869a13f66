"""Merging a deployed agent's folder on one worker with its `dynamic_agents` row.

A worker changes its copy of a deployed agent's folder on its own: "allow always" adds a pattern
to `policy.yaml`, a tool call a person approved writes a file. It publishes the change at once,
but the row may have moved on meanwhile (another worker's "allow always" on the same agent), or
the change may never have reached it (the database was away; a Duragent before this one kept
policy edits local). So the folder is never simply replaced by the row: the two are merged file by
file against what they last agreed on (`agreed`, the row as the folder last matched it).

- A file only one side changed takes that side's version (a deletion is a change).
- A file both changed takes the row's (the row is the order every worker agrees on), except
  `policy.yaml`, which takes the row's text plus the `allow:` patterns this folder added: two
  people's "allow always" on two workers both stand.
- Without `agreed` (the first start after an upgrade, its record lost) what the folder holds that
  the row lacks is kept, files only the folder has and `allow:` patterns alike: a decision is
  never lost, at the cost of keeping one a deploy made while this worker was stopped dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from duragent.runtime.policy import POLICY_FILENAME, PolicyEditError, add_allow_pattern, allowed_patterns

log = logging.getLogger(__name__)

#: An agent folder's text files by relative POSIX path.
Folder = Mapping[str, str]


def merge_folders(
    agreed: Folder | None, local: Folder | None, row: Folder | None, *, agent: str = "the agent"
) -> dict[str, str] | None:
    """The folder both the row and this worker should hold; None: the agent is not deployed."""
    if local is None:
        # No folder here (never mirrored, or deleted by hand): the mirror takes the row.
        return None if row is None else dict(row)
    if row is None:
        # Removed by another worker (it was shared), or never shared yet (this worker shares it).
        return None if agreed is not None else dict(local)
    if local == row:
        return dict(row)
    merged: dict[str, str] = {}
    for path in sorted({*(agreed or {}), *local, *row}):
        content = _merge_file(path, agreed, local, row, agent)
        if content is not None:
            merged[path] = content
    return merged


def _merge_file(path: str, agreed: Folder | None, local: Folder, row: Folder, agent: str) -> str | None:
    mine, theirs = local.get(path), row.get(path)
    if agreed is None:
        if theirs is None:
            return mine  # only this folder has it: kept
        if mine is None or mine == theirs or path != POLICY_FILENAME:
            return theirs
        return merge_policy(None, mine, theirs)
    base = agreed.get(path)
    if mine == base:
        return theirs
    if theirs in (base, mine):
        return mine
    if path == POLICY_FILENAME and mine is not None and theirs is not None:
        return merge_policy(base, mine, theirs)
    log.warning(
        "%s of agent '%s' changed on this worker and in PostgreSQL: PostgreSQL's version stands", path, agent
    )
    return theirs


def merge_policy(agreed: str | None, local: str, row: str) -> str:
    """`row`'s policy.yaml with the `allow:` patterns `local` added since `agreed` (all of its
    patterns when `agreed` is None) appended, each once."""
    name = Path(POLICY_FILENAME)
    try:
        known = set(allowed_patterns(agreed, name)) if agreed is not None else set()
    except PolicyEditError:
        known = set()
    try:
        added = [pattern for pattern in allowed_patterns(local, name) if pattern not in known]
        merged = row
        for pattern in added:
            if pattern not in allowed_patterns(merged, name):
                merged = add_allow_pattern(merged, pattern)
    except PolicyEditError as error:
        log.warning("policy.yaml changed on this worker and in PostgreSQL, and cannot be merged: %s", error)
        return row
    return merged
