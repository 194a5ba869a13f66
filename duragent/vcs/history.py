"""History: the data repository's git log, read back into what happened.

One `git log` process streams every commit with its files; entries are parsed as they
arrive and git is stopped as soon as enough have matched, so a filtered query over
thousands of commits stays fast. What a commit was about comes from the committer's
trailers (`Duragent-Kind`, `Duragent-Session`, `Duragent-Agent`) and, for commits a
person made by hand, from the folders its files are in (`sessions/<id>/`,
`memory/<agent>/`, `artifacts/<agent>/`, `agents/<name>/`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from duragent.vcs.committer import BY_PERSON, TRAILER_AGENT, TRAILER_BY, TRAILER_KIND, TRAILER_SESSION
from duragent.vcs.repo import DEFAULT_AUTHOR, GitRepo, Identity, parse_identity

AuthorKind = Literal["agent", "human"]

_RECORD = "\x1e"
_FIELD = "\x1f"
_TRAILER_SEPARATOR = "\x1d"
_FORMAT = (
    "%x1e%H%x1f%h%x1f%aI%x1f%an%x1f%ae%x1f%s%x1f"
    f"%(trailers:key={TRAILER_KIND},key={TRAILER_SESSION},key={TRAILER_AGENT},key={TRAILER_BY},"
    "separator=%x1d)%x1f"
)
#: Top folder of the data directory -> the kind of change its files are.
_FOLDER_KINDS = {"sessions": "session", "memory": "memory", "artifacts": "artifact", "agents": "agent"}


@dataclass(frozen=True)
class HistoryEntry:
    """One commit of the data repository, as what happened rather than as a diff."""

    sha: str
    short: str
    when: datetime
    author: str
    author_kind: AuthorKind
    subject: str
    kinds: list[str]
    sessions: list[str]
    agents: list[str]
    files: list[str]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (`when` as ISO 8601) for `duragent history --json` and the HTTP API."""
        data = asdict(self)
        data["when"] = self.when.isoformat()
        return data


def read_history(
    repo_path: Path,
    *,
    limit: int = 50,
    agent: str | None = None,
    session: str | None = None,
    kind: str | None = None,
    author: AuthorKind | None = None,
    agent_author: str = DEFAULT_AUTHOR,
    path: str | None = None,
) -> list[HistoryEntry]:
    """The newest `limit` commits of the repository at `repo_path` matching every filter given.

    `agent_author` is the configured `git.author`: commits by it, or carrying Duragent trailers
    other than a person's `edit`, are the agent's, unless marked `Duragent-By: person` (a person's
    command); the rest are a human's. `path` (repo-relative)
    keeps only commits touching that file or folder.
    """
    repo = GitRepo.open_or_init(repo_path, create=False)
    if limit <= 0 or repo.head() is None:
        return []
    args = ["log", "-z", "--name-status", "--no-renames", "--no-color", f"--format={_FORMAT}"]
    filtered_here = any(value is not None for value in (agent, session, kind, author, path))
    if not filtered_here:
        args += ["-n", str(limit)]
    # git narrows to `path`'s folder (--full-diff still lists every file). Not to a session's: what
    # the agent remembered in it is under memory/, found by its `Duragent-Session` trailer here
    if path is not None:
        args += ["--full-diff", "--", path]
    ours = parse_identity(agent_author)
    entries: list[HistoryEntry] = []
    stream = repo.stream(args)
    try:
        for record in _records(stream):
            entry = _parse(record, ours)
            if _touches(entry, path) and _matches(
                entry, agent=agent, session=session, kind=kind, author=author
            ):
                entries.append(entry)
                if len(entries) >= limit:
                    break
    finally:
        stream.close()
    return entries


def _records(chunks: Iterable[str]) -> Iterator[str]:
    """Split git's output into one string per commit as it streams in."""
    buffer = ""
    for chunk in chunks:
        buffer += chunk
        *complete, buffer = buffer.split(_RECORD)
        yield from (record for record in complete if record)
    if buffer:
        yield buffer


def _parse(record: str, ours: Identity) -> HistoryEntry:
    sha, short, date, name, email, subject, trailer_text, tail = record.split(_FIELD, 7)
    tokens = [token for token in tail.lstrip("\0\n").split("\0") if token]
    files = [path.strip("\n") for path in tokens[1::2]]
    trailers = _trailers(trailer_text)
    trailer_kinds = trailers.get(TRAILER_KIND.lower(), [])
    path_kinds, path_sessions, path_agents = _from_paths(files)
    by_person = BY_PERSON in trailers.get(TRAILER_BY.lower(), [])
    is_ours = not by_person and (Identity(name, email) == ours or any(k != "edit" for k in trailer_kinds))
    return HistoryEntry(
        sha=sha,
        short=short,
        when=datetime.fromisoformat(date),
        author=f"{name} <{email}>",
        author_kind="agent" if is_ours else "human",
        subject=subject,
        kinds=trailer_kinds or path_kinds,
        sessions=_union(trailers.get(TRAILER_SESSION.lower(), []), path_sessions),
        agents=_union(trailers.get(TRAILER_AGENT.lower(), []), path_agents),
        files=files,
    )


def _trailers(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.split(_TRAILER_SEPARATOR):
        key, sep, value = line.partition(":")
        if sep and value.strip():
            values = found.setdefault(key.strip().lower(), [])
            if value.strip() not in values:
                values.append(value.strip())
    return found


def _from_paths(files: list[str]) -> tuple[list[str], list[str], list[str]]:
    """Kinds, sessions and agents implied by where the files are."""
    kinds: dict[str, None] = {}
    sessions: dict[str, None] = {}
    agents: dict[str, None] = {}
    for file in files:
        parts = file.split("/")
        kind = _FOLDER_KINDS.get(parts[0])
        if kind is None or len(parts) < 2:
            continue
        kinds[kind] = None
        # a file right under the folder (its `.gitkeep`) belongs to no session or agent
        if len(parts) < 3:
            continue
        if kind == "session":
            sessions[parts[1]] = None
        elif parts[1] != "world":
            agents[parts[1]] = None
    return list(kinds), list(sessions), list(agents)


def _touches(entry: HistoryEntry, path: str | None) -> bool:
    """True when the commit changed `path` or a file under it (always, without a path)."""
    if path is None:
        return True
    folder = path.rstrip("/") + "/"
    return any(file == path or file.startswith(folder) for file in entry.files)


def _union(first: list[str], second: list[str]) -> list[str]:
    return list(dict.fromkeys([*first, *second]))


def _matches(
    entry: HistoryEntry,
    *,
    agent: str | None,
    session: str | None,
    kind: str | None,
    author: AuthorKind | None,
) -> bool:
    return (
        (agent is None or agent in entry.agents)
        and (session is None or session in entry.sessions)
        and (kind is None or kind in entry.kinds)
        and (author is None or entry.author_kind == author)
    )
