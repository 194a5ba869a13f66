"""Reading the data repository's git log back as what happened, from real repositories."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from duragent.stores.base import Change
from duragent.vcs.committer import Committer
from duragent.vcs.history import read_history
from duragent.vcs.repo import GitRepo, NotARepository

PERSON = "Test Person <person@example.test>"
AGENT = "Duragent <duragent@localhost>"


def git(root: Path, *args: str, input: str | None = None) -> str:
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, input=input, check=True)
    return done.stdout


def write(root: Path, relative: str, text: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as file:
        file.write(text)
    return path


def commit_by_hand(root: Path, message: str, *paths: str) -> None:
    git(root, "add", *paths)
    git(root, "commit", "-q", "-m", message)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A data repository with agent commits, a person's commits and a watcher-made edit commit."""
    root = tmp_path / "data"
    committer = Committer(GitRepo.open_or_init(root))
    committer.notify(
        Change((write(root, "sessions/s1/events.jsonl", "{}\n"),), "session", "s1", "turn 1 (+3 events)")
    )
    committer.flush()
    committer.notify(
        Change(
            (write(root, "memory/assistant/2026-11-26.md", "- likes tea\n"),),
            "memory",
            "assistant",
            "2026-11-26 facts +1",
        )
    )
    committer.notify(
        Change((write(root, "sessions/s2/events.jsonl", "{}\n"),), "session", "s2", "turn 1 (+2 events)")
    )
    committer.flush()
    write(root, "memory/assistant/MEMORY.md", "# Long-term\n")
    commit_by_hand(root, "tidy long-term memory", "memory/assistant/MEMORY.md")
    write(root, "README.txt", "my own notes\n")
    commit_by_hand(root, "notes", "README.txt")
    # what the edit watcher of a later issue commits: the person's identity plus a trailer
    write(root, "memory/helper/2026-11-27.md", "- fixed a typo\n")
    git(root, "add", "memory/helper/2026-11-27.md")
    git(root, "commit", "-q", "-m", "edit: memory/helper/2026-11-27.md\n\nDuragent-Kind: edit")
    committer.notify(
        Change((write(root, "sessions/s1/events.jsonl", "{}\n"),), "session", "s1", "turn 2 (+4 events)")
    )
    committer.notify(
        Change(
            (write(root, "artifacts/assistant/report.md", "# Report\n"),),
            "artifact",
            "assistant",
            "report.md",
        )
    )
    committer.flush()
    return root


def test_history_lists_commits_newest_first_with_what_each_was_about(root: Path) -> None:
    entries = read_history(root)

    assert [e.subject for e in entries] == [
        "session s1, artifact assistant: 4 events",
        "edit: memory/helper/2026-11-27.md",
        "notes",
        "tidy long-term memory",
        "session s2: turn 1 (+2 events)",
        "memory assistant: 2026-11-26 facts +1",
        "session s1: turn 1 (+3 events)",
    ]
    newest = entries[0]
    assert newest.author == AGENT
    assert newest.author_kind == "agent"
    assert newest.kinds == ["session", "artifact"]
    assert newest.sessions == ["s1"]
    assert newest.agents == ["assistant"]
    assert newest.files == ["artifacts/assistant/report.md", "sessions/s1/events.jsonl"]
    assert newest.sha == git(root, "rev-parse", "HEAD").strip()
    assert newest.sha.startswith(newest.short)
    assert abs(time.time() - newest.when.timestamp()) < 60


def test_a_persons_commits_are_human_and_their_kind_comes_from_the_folders(root: Path) -> None:
    by_subject = {entry.subject: entry for entry in read_history(root)}

    tidy = by_subject["tidy long-term memory"]
    assert (tidy.author, tidy.author_kind) == (PERSON, "human")
    assert (tidy.kinds, tidy.agents, tidy.sessions) == (["memory"], ["assistant"], [])
    notes = by_subject["notes"]
    assert (notes.author_kind, notes.kinds, notes.files) == ("human", [], ["README.txt"])
    edit = by_subject["edit: memory/helper/2026-11-27.md"]
    assert (edit.author_kind, edit.kinds, edit.agents) == ("human", ["edit"], ["helper"])


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"session": "s1"}, ["session s1, artifact assistant: 4 events", "session s1: turn 1 (+3 events)"]),
        (
            {"agent": "assistant"},
            [
                "session s1, artifact assistant: 4 events",
                "tidy long-term memory",
                "memory assistant: 2026-11-26 facts +1",
            ],
        ),
        ({"kind": "memory"}, ["tidy long-term memory", "memory assistant: 2026-11-26 facts +1"]),
        ({"author": "human"}, ["edit: memory/helper/2026-11-27.md", "notes", "tidy long-term memory"]),
        (
            {"author": "agent", "limit": 2},
            [
                "session s1, artifact assistant: 4 events",
                "session s2: turn 1 (+2 events)",
            ],
        ),
        ({"limit": 1}, ["session s1, artifact assistant: 4 events"]),
        ({"session": "nope"}, []),
    ],
)
def test_history_filters(root: Path, filters: dict[str, object], expected: list[str]) -> None:
    entries = read_history(root, **filters)  # type: ignore[arg-type]
    assert [entry.subject for entry in entries] == expected


def test_history_entries_serialise_to_json(root: Path) -> None:
    data = read_history(root, limit=1)[0].to_json()
    assert sorted(data) == [
        "agents",
        "author",
        "author_kind",
        "files",
        "kinds",
        "sessions",
        "sha",
        "short",
        "subject",
        "when",
    ]
    assert data["when"].endswith("+00:00") or data["when"][-6] in "+-"


def test_a_configured_author_counts_as_the_agent(tmp_path: Path) -> None:
    root = tmp_path / "data"
    committer = Committer(GitRepo.open_or_init(root), author="Ops Bot <ops@example.test>")
    committer.notify(
        Change((write(root, "agents/helper/agent.yaml", "x: 1\n"),), "agent", "helper", "updated")
    )
    committer.flush()
    (entry,) = read_history(root, agent_author="Ops Bot <ops@example.test>")
    assert (entry.author_kind, entry.kinds, entry.agents) == ("agent", ["agent"], ["helper"])


def test_an_empty_repository_has_no_history(tmp_path: Path) -> None:
    GitRepo.open_or_init(tmp_path / "data")
    assert read_history(tmp_path / "data") == []


def test_a_folder_that_is_not_a_repository_is_reported(tmp_path: Path) -> None:
    with pytest.raises(NotARepository):
        read_history(tmp_path)


def test_a_data_folder_inside_another_repository_gets_its_own(tmp_path: Path) -> None:
    outer = GitRepo.open_or_init(tmp_path)
    inner = tmp_path / "data"
    inner.mkdir()
    assert not GitRepo.is_repo(inner)  # inside the outer repository, not its own top folder
    with pytest.raises(NotARepository):
        GitRepo.open_or_init(inner, create=False)
    repo = GitRepo.open_or_init(inner)
    assert GitRepo.is_repo(inner)
    assert repo.git_dir.resolve() == (inner / ".git").resolve() != outer.git_dir.resolve()
    assert GitRepo.open_or_init(inner).git_dir == repo.git_dir  # opened again, not made again


def test_filtering_thousands_of_commits_finds_the_newest_and_the_oldest(tmp_path: Path) -> None:
    root = tmp_path / "data"
    GitRepo.open_or_init(root)
    commits = 3000
    stream = []
    for n in range(commits):
        session = "old" if n < 10 else f"s{n % 50}"
        data = f"{n}\n"
        stream.append(
            f"commit refs/heads/main\nauthor {AGENT} {1_700_000_000 + n} +0000\n"
            f"committer {AGENT} {1_700_000_000 + n} +0000\n"
            f"data <<END\nsession {session}: +1 events\n\nDuragent-Kind: session\n"
            f"Duragent-Session: {session}\nEND\n"
            f"M 100644 inline sessions/{session}/events.jsonl\ndata {len(data)}\n{data}\n"
        )
    git(root, "fast-import", "--quiet", input="".join(stream))
    git(root, "reset", "-q", "--hard")

    newest = read_history(root, kind="session", agent=None, author="agent", limit=100, session=None)
    only_old = [e for e in read_history(root, limit=5000, author="agent") if "old" in e.sessions]

    assert len(newest) == 100
    assert newest[0].subject == f"session s{(commits - 1) % 50}: +1 events"
    assert len(only_old) == 10


def test_the_placeholders_keeping_empty_folders_name_no_session_or_agent(tmp_path: Path) -> None:
    root = tmp_path / "data"
    GitRepo.open_or_init(root)
    for folder in ("sessions", "agents", "memory", "artifacts"):
        write(root, f"{folder}/.gitkeep", "")
    commit_by_hand(root, "scaffold", ".")

    (entry,) = read_history(root)

    assert (entry.sessions, entry.agents) == ([], [])
    assert sorted(entry.kinds) == ["agent", "artifact", "memory", "session"]
