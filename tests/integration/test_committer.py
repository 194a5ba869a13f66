"""The git committer against real repositories: batching, timing, people using git, secrets."""

from __future__ import annotations

import itertools
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from duragent.secrets import SecretGuard
from duragent.stores.base import Change
from duragent.vcs.committer import CommitFailed, Committer, commit_message
from duragent.vcs.repo import GitRepo, RepoBusy, RepoLocked

AGENT = "Duragent <duragent@localhost>"


def git(root: Path, *args: str, check: bool = True) -> str:
    """Run git as a person would in the data repository."""
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {done.stderr}")
    return done.stdout


def commit_count(root: Path) -> int:
    out = git(root, "rev-list", "--count", "HEAD", check=False).strip()
    return int(out) if out.isdigit() else 0


def subjects(root: Path) -> list[str]:
    return git(root, "log", "--format=%s").splitlines()


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def append_event(root: Path, session: str, line: str) -> Path:
    path = root / "sessions" / session / "events.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as file:
        file.write(line + "\n")
    return path


def session_change(path: Path, session: str, summary: str = "+1 events") -> Change:
    return Change((path,), "session", session, summary)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def repo(root: Path) -> GitRepo:
    return GitRepo.open_or_init(root)


@pytest.fixture
def make_committer(repo: GitRepo) -> Iterator[Callable[..., Committer]]:
    started: list[Committer] = []

    def make(**options: object) -> Committer:
        committer = Committer(repo, **options)  # type: ignore[arg-type]
        committer.start()
        started.append(committer)
        return committer

    yield make
    for committer in started:
        committer.close(timeout=15)


# --- batching and timing -------------------------------------------------------------------------


def test_a_thousand_changes_in_a_second_become_a_handful_of_commits_holding_every_file(
    root: Path, make_committer: Callable[..., Committer]
) -> None:
    committer = make_committer(debounce=0.2, max_delay=0.5)
    sessions = [f"s{i}" for i in range(10)]
    started = time.monotonic()
    for n in range(1000):
        session = sessions[n % 10]
        path = append_event(root, session, f'{{"seq": {n // 10 + 1}}}')
        committer.notify(session_change(path, session))
        time.sleep(max(0.0, started + n / 1000 - time.monotonic()))
    committer.flush(timeout=10)

    assert 1 <= committer.commits_made <= 6
    assert commit_count(root) == committer.commits_made
    for session in sessions:
        relative = f"sessions/{session}/events.jsonl"
        assert git(root, "show", f"HEAD:{relative}") == (root / relative).read_text()
        assert len((root / relative).read_text().splitlines()) == 100
    assert git(root, "status", "--porcelain") == ""


def test_a_commit_waits_until_writes_have_been_quiet_for_the_debounce(
    root: Path, make_committer: Callable[..., Committer]
) -> None:
    # margins of ten times the pauses: on a loaded machine a 0.25 s sleep can take 0.5 s
    committer = make_committer(debounce=2.0, max_delay=20.0)
    committer.notify(session_change(append_event(root, "s1", "{}"), "s1"))
    time.sleep(0.2)
    committer.notify(session_change(append_event(root, "s2", "{}"), "s2"))
    assert committer.commits_made == 0, "committed before 2 s of quiet"

    assert wait_until(lambda: commit_count(root) == 1)
    assert git(root, "show", "--name-only", "--format=", "HEAD").split() == [
        "sessions/s1/events.jsonl",
        "sessions/s2/events.jsonl",
    ]


def test_max_delay_bounds_the_wait_under_constant_writes(
    root: Path, make_committer: Callable[..., Committer]
) -> None:
    # writes every 20 ms never leave the 2 s of quiet the debounce waits for: max_delay (which
    # cannot be shorter than the debounce) is what commits them
    committer = make_committer(debounce=2.0, max_delay=2.0)
    deadline = time.monotonic() + 60
    longest_pause = 0.0
    last = time.monotonic()
    while committer.commits_made < 2:
        assert time.monotonic() < deadline, "constant writes were not committed within 60 s"
        committer.notify(session_change(append_event(root, "s1", "{}"), "s1"))
        now = time.monotonic()
        longest_pause, last = max(longest_pause, now - last), now
        time.sleep(0.02)
    assert longest_pause < 2.0, "the writes paused for the debounce: the test proved nothing"


def test_flush_commits_pending_changes_immediately(
    root: Path, make_committer: Callable[..., Committer]
) -> None:
    committer = make_committer(debounce=60.0, max_delay=120.0)
    committer.notify(session_change(append_event(root, "s1", "{}"), "s1", "turn 1 (+2 events)"))
    started = time.monotonic()
    committer.flush(timeout=10)

    assert time.monotonic() - started < 3
    assert subjects(root) == ["session s1: turn 1 (+2 events)"]
    assert committer.pending == 0


def test_flush_without_a_running_worker_commits_in_the_calling_thread(root: Path, repo: GitRepo) -> None:
    committer = Committer(repo)
    committer.notify(session_change(append_event(root, "s1", "{}"), "s1"))
    committer.flush()
    assert committer.commits_made == 1
    assert subjects(root) == ["session s1: +1 event"]


def test_notify_never_waits_for_git_even_while_a_commit_is_stuck(
    root: Path, repo: GitRepo, make_committer: Callable[..., Committer]
) -> None:
    lock = repo.git_dir / "index.lock"
    lock.write_text("")
    committer = make_committer(debounce=0.0, max_delay=0.0)
    path = append_event(root, "s1", "{}")
    committer.notify(session_change(path, "s1"))
    time.sleep(0.2)  # the worker is now waiting for the lock

    started = time.perf_counter()
    for _ in range(1000):
        committer.notify(session_change(path, "s1"))
    elapsed = time.perf_counter() - started

    lock.unlink()
    committer.flush(timeout=15)
    # A notify that waited for git would never return while the lock is held.
    assert elapsed < 2, f"1000 notify() calls took {elapsed * 1000:.0f} ms"
    assert commit_count(root) >= 1


def test_deleted_paths_are_committed_as_deletions(root: Path, repo: GitRepo) -> None:
    committer = Committer(repo)
    append_event(root, "s1", "{}")
    (root / "sessions" / "s1" / "state.yaml").write_text("last_seq: 1\n")
    committer.notify(Change((root / "sessions" / "s1",), "session", "s1", "+1 events"))
    committer.flush()
    for path in (root / "sessions" / "s1").iterdir():
        path.unlink()
    (root / "sessions" / "s1").rmdir()

    committer.notify(Change((root / "sessions" / "s1",), "session", "s1", "deleted"))
    committer.flush()
    assert subjects(root)[0] == "session s1: deleted"
    assert git(root, "ls-tree", "-r", "--name-only", "HEAD") == ""
    assert git(root, "status", "--porcelain") == ""


def test_a_persons_removal_after_the_agents_write_in_one_batch_is_committed_as_theirs(
    root: Path, repo: GitRepo
) -> None:
    """The agent's run commits files as they are on disk: a file a person removed after the
    agent wrote it, before the batch was committed, would go in the agent's commit and the
    person's would find nothing left."""
    from duragent.stores.base import changes_by_person

    git(root, "config", "user.name", "Test Person")
    git(root, "config", "user.email", "person@example.test")
    committer = Committer(repo)
    schedule = root / "schedules" / "sch_1.yaml"
    schedule.parent.mkdir(parents=True)
    schedule.write_text("id: sch_1\n")
    committer.notify(Change((schedule,), "schedule", "sch_1", "created"))
    committer.flush()
    schedule.write_text("id: sch_1\nlast_run: now\n")
    committer.notify(Change((schedule,), "schedule", "sch_1", "ran"))
    schedule.unlink()
    with changes_by_person():
        committer.notify(Change((schedule,), "schedule", "sch_1", "removed"))
    committer.flush()

    last = git(root, "log", "-1", "--format=%an|%s|%(trailers:key=Duragent-By,valueonly)", "--name-status")
    assert last.splitlines()[0] == "Test Person|schedule sch_1: removed|person"
    assert "D\tschedules/sch_1.yaml" in last
    assert git(root, "status", "--porcelain") == ""


@pytest.mark.parametrize("where", ["here", "apart"])
def test_a_persons_lines_between_the_agents_in_one_session_log_are_committed_as_theirs(
    root: Path, repo: GitRepo, where: str
) -> None:
    """A person's answer comes between the agent's lines of a session log, all in one batch (the
    turn goes on at once): each run's lines are committed by its author, the log cut where the
    run's last append ended, not all of it by whoever's run came last. Also in the commit process."""
    from duragent.stores.base import changes_by_person

    git(root, "config", "user.name", "Test Person")
    git(root, "config", "user.email", "person@example.test")
    apart = 1 if where == "apart" else None
    committer = Committer(repo, debounce=3600, max_delay=3600, separate_process_from=apart)
    committer.start()

    def appended(line: str) -> Change:
        path = append_event(root, "s1", line)
        return Change((path,), "session", "s1", "+1 event", appended_up_to=path.stat().st_size)

    try:
        committer.notify(appended("asked"))
        with changes_by_person():
            committer.notify(appended("answered"))
        committer.notify(appended("ran"))
        committer.flush(timeout=30)
        assert (committer._commit_process is not None) == (where == "apart")
    finally:
        committer.close(timeout=15)

    log = git(
        root, "log", "--reverse", "--format=%H|%an|%(trailers:key=Duragent-By,valueonly,separator=%x2c)"
    )
    commits = [line.split("|") for line in log.splitlines()]
    assert [
        (author, by, git(root, "show", f"{sha}:sessions/s1/events.jsonl")) for sha, author, by in commits
    ] == [
        ("Duragent", "", "asked\n"),
        ("Test Person", "person", "asked\nanswered\n"),
        ("Duragent", "", "asked\nanswered\nran\n"),
    ]


def committed_logs(root: Path, session: str = "s1") -> list[str]:
    """The session's log as each commit holds it, oldest first."""
    shas = git(root, "log", "--reverse", "--format=%H").split()
    return [git(root, "show", f"{sha}:sessions/{session}/events.jsonl") for sha in shas]


def test_a_batch_retried_after_a_later_run_failed_never_takes_a_log_back(
    root: Path, repo: GitRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch's second run is committed, its third fails (a person's rebase): the retry's first
    run must not commit the log cut where its own lines ended, behind what HEAD holds by then."""
    from duragent.stores.base import changes_by_person
    from duragent.vcs.committer import CommitFailed

    git(root, "config", "user.name", "Test Person")
    git(root, "config", "user.email", "person@example.test")
    committer = Committer(repo, debounce=3600, max_delay=3600)
    commit_group = Committer._commit_group
    groups = 0

    def third_fails(self: Committer, batch: Sequence[Change], author: str) -> None:
        nonlocal groups
        groups += 1
        if groups == 3:
            raise RepoBusy("a rebase is in progress")
        commit_group(self, batch, author)

    monkeypatch.setattr(Committer, "_commit_group", third_fails)

    def appended(line: str) -> Change:
        path = append_event(root, "s1", line)
        return Change((path,), "session", "s1", "+1 event", appended_up_to=path.stat().st_size)

    committer.notify(appended("asked"))
    with changes_by_person():
        committer.notify(appended("answered"))
    committer.notify(appended("ran"))
    with pytest.raises(CommitFailed):
        committer.flush()  # fails in its third run and keeps the batch
    committer.flush()  # the retry

    logs = committed_logs(root)
    assert logs[-1] == "asked\nanswered\nran\n"
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(logs)), logs


def test_a_log_an_earlier_commit_took_from_disk_is_never_cut_back_by_the_next_batch(
    root: Path, repo: GitRepo
) -> None:
    """A commit took the log as it was on disk, with lines whose notices came after it: the next
    batch's runs must not commit it cut where those lines' own appends ended, behind HEAD."""
    from duragent.stores.base import changes_by_person

    git(root, "config", "user.name", "Test Person")
    git(root, "config", "user.email", "person@example.test")
    committer = Committer(repo, debounce=3600, max_delay=3600)
    path = append_event(root, "s1", "asked")
    asked = path.stat().st_size
    paused = append_event(root, "s1", "paused").stat().st_size
    answered = append_event(root, "s1", "answered").stat().st_size
    committer.notify(Change((path,), "session", "s1", "+1 event", appended_up_to=asked))
    committer.flush()  # commits all three lines, as the log is on disk
    committer.notify(Change((path,), "session", "s1", "+1 event", appended_up_to=paused))
    with changes_by_person():
        committer.notify(Change((path,), "session", "s1", "+1 event", appended_up_to=answered))
    committer.flush()

    logs = committed_logs(root)
    assert logs[-1] == "asked\npaused\nanswered\n"
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(logs)), logs


@pytest.mark.parametrize("where", ["in process", "apart"])
def test_a_persons_line_on_disk_before_its_notice_is_not_committed_in_the_agents_commit(
    root: Path, repo: GitRepo, where: str
) -> None:
    """A person's answer is written while the agent's batch is committed, and reported only once
    fsynced: the agent's commit takes the log up to its own last append, the answer is theirs."""
    from duragent.stores.base import changes_by_person

    git(root, "config", "user.name", "Test Person")
    git(root, "config", "user.email", "person@example.test")
    committer = Committer(
        repo, debounce=3600, max_delay=3600, separate_process_from=1 if where == "apart" else None
    )
    committer.start()
    try:
        path = append_event(root, "s1", "asked")
        committer.notify(Change((path,), "session", "s1", "+1 event", appended_up_to=path.stat().st_size))
        answered = append_event(root, "s1", "answered").stat().st_size  # on disk, not yet reported
        committer.flush(timeout=30)
        with changes_by_person():
            committer.notify(Change((path,), "session", "s1", "+1 event", appended_up_to=answered))
        committer.flush(timeout=30)
    finally:
        committer.close(timeout=15)

    log = git(root, "log", "--reverse", "--format=%H|%an")
    commits = [line.split("|") for line in log.splitlines()]
    assert [(author, git(root, "show", f"{sha}:sessions/s1/events.jsonl")) for sha, author in commits] == [
        ("Duragent", "asked\n"),
        ("Test Person", "asked\nanswered\n"),
    ]


def test_nothing_is_committed_when_the_files_did_not_change(root: Path, repo: GitRepo) -> None:
    committer = Committer(repo)
    path = append_event(root, "s1", "{}")
    committer.notify(session_change(path, "s1"))
    committer.flush()
    committer.notify(session_change(path, "s1"))
    committer.flush()
    assert committer.commits_made == 1


@pytest.mark.parametrize("lost_update", ["new file", "changed file"])
def test_a_commit_whose_index_update_a_crash_cut_off_is_repaired_by_the_next_one(
    root: Path, repo: GitRepo, lost_update: str
) -> None:
    """Killed between moving HEAD and updating the index, git shows committed files as `??` or `MM`."""
    committer = Committer(repo)
    path = append_event(root, "s1", '{"seq": 1}')
    committer.notify(session_change(path, "s1"))
    committer.flush()
    if lost_update == "changed file":
        append_event(root, "s1", '{"seq": 2}')
        committer.notify(session_change(path, "s1"))
        committer.flush()
        git(root, "reset", "-q", "HEAD~1", "--", "sessions/s1/events.jsonl")  # the index of one commit ago
    else:
        git(root, "rm", "-q", "--cached", "sessions/s1/events.jsonl")  # the index from before the commit
    assert git(root, "status", "--porcelain") != ""

    committer.notify(session_change(path, "s1", "uncommitted before a restart"))
    committer.flush()

    assert git(root, "status", "--porcelain") == ""
    assert committer.commits_made == (2 if lost_update == "changed file" else 1)


KILLED_AFTER_MOVING_HEAD = """
import os, signal, sys
from pathlib import Path
from duragent.stores.base import Change
from duragent.vcs.committer import Committer
from duragent.vcs.repo import GitRepo

root = Path(sys.argv[1])
repo = GitRepo.open_or_init(root)
# the dangerous moment: HEAD has moved, the person's index is not written yet
repo._sync_index = lambda made, deadline: os.kill(os.getpid(), signal.SIGKILL)
paths = [root / "sessions" / name / "events.jsonl" for name in ("s1", "s2")]
Committer(repo).commit_batch([Change((path,), "session", path.parent.name, "+1 events") for path in paths])
"""


def test_a_kill_after_head_moved_leaves_an_index_the_next_commit_of_other_files_repairs(
    root: Path, repo: GitRepo
) -> None:
    """The next commit may hold none of the files the killed one committed (their sessions ended)."""
    committer = Committer(repo)
    first = append_event(root, "s1", '{"seq": 1}')
    committer.notify(session_change(first, "s1"))
    committer.flush()
    append_event(root, "s1", '{"seq": 2}')
    append_event(root, "s2", '{"seq": 1}')
    killed = subprocess.run([sys.executable, "-c", KILLED_AFTER_MOVING_HEAD, str(root)], check=False)
    assert killed.returncode == -signal.SIGKILL
    assert "duragent: 2 sessions" in git(root, "reflog", "-1")  # HEAD moved
    assert sorted(git(root, "status", "--porcelain", "--untracked-files=all").splitlines()) == [
        "?? sessions/s2/events.jsonl",
        "D  sessions/s2/events.jsonl",
        "MM sessions/s1/events.jsonl",
    ]

    other = append_event(root, "s3", '{"seq": 1}')
    committer.notify(session_change(other, "s3"))
    committer.flush()

    assert git(root, "status", "--porcelain") == ""
    assert git(root, "show", "HEAD:sessions/s1/events.jsonl") == '{"seq": 1}\n{"seq": 2}\n'


HOLDS_THE_COMMIT_LOCK = """
import fcntl, os, subprocess, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
# a git command the killed committer started, still running: it holds the lock it inherited (and
# this process's stdin, so it ends when the test closes that)
orphan = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], pass_fds=(fd,))
print(orphan.pid, flush=True)
os.kill(os.getpid(), 9)
"""


def test_a_commit_waits_for_the_git_commands_a_killed_committer_left_running(
    root: Path, tmp_path: Path
) -> None:
    # Such a command may write the person's index late: after ours, it would leave entries older
    # than HEAD (`git status`: MM).
    repo = GitRepo.open_or_init(root, lock_timeout=0.5)
    lock = repo.git_dir / "duragent-commit.lock"
    killed = subprocess.Popen(
        [sys.executable, "-c", HOLDS_THE_COMMIT_LOCK, str(lock)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert killed.stdin is not None
    assert killed.stdout is not None
    orphan = int(killed.stdout.readline())
    assert killed.wait() == -signal.SIGKILL
    committer = Committer(repo)
    path = append_event(root, "s1", "{}")
    committer.notify(session_change(path, "s1"))
    try:
        with pytest.raises(CommitFailed, match=r"duragent-commit\.lock"):
            committer.flush()
    finally:
        killed.stdin.close()  # the orphan's stdin: it ends
    assert wait_until(lambda: _process_state(orphan) == "gone", timeout=30), "the orphan did not end"

    committer.flush()
    assert git(root, "status", "--porcelain") == ""


def test_ignored_files_are_never_committed_alone_or_inside_a_folder(root: Path, repo: GitRepo) -> None:
    committer = Committer(repo)
    (root / ".gitignore").parent.mkdir(parents=True, exist_ok=True)
    (root / ".gitignore").write_text("*.log\n")
    log_file = root / "processes" / "p1" / "output.log"
    log_file.parent.mkdir(parents=True)
    log_file.write_text("noise\n")
    (root / "processes" / "p1" / "meta.yaml").write_text("state: running\n")
    committer.notify(Change((log_file,), "process", "p1", "output"))
    committer.notify(Change((root / "processes" / "p1",), "process", "p1", "started"))
    committer.flush()
    assert git(root, "ls-tree", "-r", "--name-only", "HEAD").split() == ["processes/p1/meta.yaml"]

    # a later commit of the same paths (now known to the index) still leaves the log out
    log_file.write_text("more noise\n")
    (root / "processes" / "p1" / "meta.yaml").write_text("state: done\n")
    committer.notify(Change((log_file, root / "processes" / "p1" / "meta.yaml"), "process", "p1", "done"))
    committer.flush()
    assert git(root, "ls-tree", "-r", "--name-only", "HEAD").split() == ["processes/p1/meta.yaml"]
    assert git(root, "show", "HEAD:processes/p1/meta.yaml") == "state: done\n"


def test_a_file_the_runtime_writes_that_the_persons_gitignore_lists_is_left_out_once(
    root: Path, make_committer: Callable[..., Committer]
) -> None:
    # git refuses `check-ignore` under the literal pathspecs every other command runs with: the
    # ignored file was then staged by name, `git add` failed, and the batch was retried forever
    committer = make_committer(debounce=0.01)
    (root / ".gitignore").write_text("sessions/*/state.yaml\n")
    events = append_event(root, "s1", "{}")
    snapshot = events.with_name("state.yaml")
    snapshot.write_text("last_seq: 1\n")
    committer.notify(session_change(events, "s1"))
    committer.notify(Change((snapshot,), "session", "s1", "snapshot at seq 1"))
    committer.flush(timeout=30)

    assert git(root, "ls-tree", "-r", "--name-only", "HEAD").split() == ["sessions/s1/events.jsonl"]
    assert committer.last_error is None
    assert committer.pending == 0


def test_the_private_index_of_a_killed_process_is_removed_and_ours_is_reused(
    root: Path, repo: GitRepo
) -> None:
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    abandoned = repo.git_dir / f"duragent-index-{gone.stdout.strip()}-0"
    abandoned.write_text("left by a process killed while committing")
    committer = Committer(repo)
    for n in range(3):
        committer.notify(session_change(append_event(root, "s1", f'{{"seq": {n}}}'), "s1"))
        committer.flush()

    assert not abandoned.exists()
    assert commit_count(root) == 3
    assert len(list(repo.git_dir.glob("duragent-index-*"))) == 1
    assert git(root, "status", "--porcelain") == ""


# --- beside a person using git -------------------------------------------------------------------


def test_a_persons_commits_staged_and_unstaged_work_are_left_untouched(root: Path, repo: GitRepo) -> None:
    committer = Committer(repo)
    committer.notify(session_change(append_event(root, "s1", "{}"), "s1"))
    committer.flush()
    (root / "notes.md").write_text("my notes\n")
    git(root, "add", "notes.md")
    git(root, "commit", "-q", "-m", "person: notes")
    persons_commit = git(root, "rev-parse", "HEAD").strip()
    (root / "notes.md").write_text("my notes, edited but not staged\n")
    (root / "todo.txt").write_text("staged, not for the agent to commit\n")
    git(root, "add", "todo.txt")

    committer.notify(session_change(append_event(root, "s1", "{}"), "s1"))
    committer.flush()

    assert subjects(root) == ["session s1: +1 event", "person: notes", "session s1: +1 event"]
    assert git(root, "merge-base", "--is-ancestor", persons_commit, "HEAD", check=False) == ""
    assert git(root, "show", "--name-only", "--format=", "HEAD").split() == ["sessions/s1/events.jsonl"]
    assert git(root, "diff", "--cached", "--name-only").split() == ["todo.txt"]
    assert git(root, "diff", "--name-only").split() == ["notes.md"]
    assert (root / "notes.md").read_text() == "my notes, edited but not staged\n"
    assert (
        git(root, "log", "--format=%an <%ae>|%cn <%ce>", "-1")
        == f"{AGENT}|Test Person <person@example.test>\n"
    )


def test_a_person_committing_by_hand_at_the_same_time_loses_nothing(
    root: Path, make_committer: Callable[..., Committer]
) -> None:
    committer = make_committer(debounce=0.02, max_delay=0.05)
    (root / "human").mkdir(parents=True)
    person_done = threading.Event()

    def person() -> None:
        for n in range(8):
            (root / "human" / f"{n}.txt").write_text(f"note {n}\n")
            # like a person whose git command met a lock, try again until it works
            while True:
                added = subprocess.run(["git", "add", f"human/{n}.txt"], cwd=root, capture_output=True)
                if added.returncode == 0:
                    made = subprocess.run(
                        ["git", "commit", "-q", "-m", f"person {n}", "--", f"human/{n}.txt"],
                        cwd=root,
                        capture_output=True,
                    )
                    if made.returncode == 0:
                        break
                time.sleep(0.01)
            # a person types between commits; agent commits land in between (waited for, not
            # timed: on a loaded machine 50 ms may pass without one)
            made_before = committer.commits_made
            deadline = time.monotonic() + 10
            while committer.commits_made == made_before and time.monotonic() < deadline:
                time.sleep(0.01)
        person_done.set()

    thread = threading.Thread(target=person)
    thread.start()
    n = 0
    while not person_done.is_set() or n < 50:
        committer.notify(session_change(append_event(root, "s1", f'{{"n": {n}}}'), "s1"))
        n += 1
        time.sleep(0.005)
    thread.join()
    committer.flush(timeout=15)

    log = subjects(root)
    assert [s for s in log if s.startswith("person")] == [f"person {i}" for i in reversed(range(8))]
    between = log[log.index("person 7") : log.index("person 0")]
    assert any(s.startswith("session s1") for s in between), log
    for i in range(8):
        assert git(root, "show", f"HEAD:human/{i}.txt") == f"note {i}\n"
    assert git(root, "show", "HEAD:sessions/s1/events.jsonl").count("\n") == n
    assert git(root, "status", "--porcelain") == ""


def test_a_held_index_lock_delays_the_commit_until_it_is_released(root: Path, repo: GitRepo) -> None:
    lock = repo.git_dir / "index.lock"
    lock.write_text("")
    threading.Timer(1.0, lock.unlink).start()
    committer = Committer(repo)
    committer.notify(session_change(append_event(root, "s1", "{}"), "s1"))
    started = time.monotonic()
    committer.flush(timeout=15)

    assert time.monotonic() - started >= 0.9
    assert subjects(root) == ["session s1: +1 event"]


def test_a_lock_held_too_long_fails_clearly_and_the_batch_is_retried_later(
    root: Path, tmp_path: Path
) -> None:
    repo = GitRepo.open_or_init(root, lock_timeout=0.3)
    lock = repo.git_dir / "index.lock"
    lock.write_text("")
    committer = Committer(repo)
    committer.notify(session_change(append_event(root, "s1", "{}"), "s1"))

    with pytest.raises(CommitFailed, match=r"index\.lock"):
        committer.flush()
    assert committer.last_error is not None
    assert "index.lock" in committer.last_error

    lock.unlink()
    committer.flush()
    assert subjects(root) == ["session s1: +1 event"]
    assert committer.last_error is None


def test_nothing_is_committed_while_a_rebase_is_in_progress(root: Path, repo: GitRepo) -> None:
    (repo.git_dir / "rebase-merge").mkdir()
    path = append_event(root, "s1", "{}")
    with pytest.raises(RepoBusy, match="rebase"):
        repo.commit_paths([path], "session s1: +1 events")


def test_without_a_git_identity_the_author_is_also_the_committer(
    root: Path, repo: GitRepo, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    nobody = tmp_path / "nobody"
    nobody.mkdir()
    monkeypatch.setenv("HOME", str(nobody))
    committer = Committer(repo, author="Assistant Bot <bot@example.test>")
    committer.notify(session_change(append_event(root, "s1", "{}"), "s1"))
    committer.flush()
    assert git(root, "log", "--format=%an <%ae>|%cn <%ce>", "-1") == (
        "Assistant Bot <bot@example.test>|Assistant Bot <bot@example.test>\n"
    )


def test_a_person_setting_their_git_identity_while_the_server_runs_commits_the_next_change_as_them(
    root: Path, repo: GitRepo, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    home = tmp_path / "person"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    committer = Committer(repo, author="Assistant Bot <bot@example.test>")
    committer.notify(session_change(append_event(root, "s1", "{}"), "s1"))
    committer.flush()
    git(root, "config", "user.name", "Ada Lovelace")
    git(root, "config", "user.email", "ada@example.test")
    committer.notify(session_change(append_event(root, "s1", "{}"), "s1"))
    committer.flush()
    (home / ".gitconfig").write_text("[user]\n\tname = Grace Hopper\n\temail = grace@example.test\n")
    git(root, "config", "--unset", "user.name")
    git(root, "config", "--unset", "user.email")
    committer.notify(session_change(append_event(root, "s1", "{}"), "s1"))
    committer.flush()

    assert git(root, "log", "--format=%cn <%ce>", "-3").splitlines() == [
        "Grace Hopper <grace@example.test>",
        "Ada Lovelace <ada@example.test>",
        "Assistant Bot <bot@example.test>",
    ]


def test_an_identity_changed_in_an_included_git_config_file_is_used_by_the_next_commit(
    root: Path, repo: GitRepo, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    home = tmp_path / "person"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    identity = home / "identity.inc"
    identity.write_text("[user]\n\tname = Ada Lovelace\n\temail = ada@example.test\n")
    (home / ".gitconfig").write_text(f"[include]\n\tpath = {identity}\n")
    committer = Committer(repo, author="Assistant Bot <bot@example.test>")
    committer.notify(session_change(append_event(root, "s1", "{}"), "s1"))
    committer.flush()
    identity.write_text("[user]\n\tname = Ada King\n\temail = ada.king@example.test\n")
    committer.notify(session_change(append_event(root, "s1", "{}"), "s1"))
    committer.flush()

    assert git(root, "log", "--format=%cn <%ce>", "-2").splitlines() == [
        "Ada King <ada.king@example.test>",
        "Ada Lovelace <ada@example.test>",
    ]


def test_paths_outside_the_repository_are_skipped_with_a_warning(
    root: Path, repo: GitRepo, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("not ours\n")
    inside = append_event(root, "s1", "{}")
    committer = Committer(repo)
    committer.notify(Change((outside, inside), "session", "s1", "+1 events"))
    with caplog.at_level(logging.WARNING):
        committer.flush()
    assert git(root, "show", "--name-only", "--format=", "HEAD").split() == ["sessions/s1/events.jsonl"]
    assert str(outside) in caplog.text


# --- the secret guard ----------------------------------------------------------------------------


def test_a_file_still_holding_a_secret_is_not_committed_and_never_reaches_git(
    root: Path, repo: GitRepo, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "super-secret-value-42"
    committer = Committer(repo, guard=SecretGuard({"MY_SERVICE_TOKEN": secret}))
    clean = append_event(root, "clean", '{"type": "user_message", "payload": {"text": "hello"}}')
    leaky = append_event(root, "leaky", f'{{"type": "user_message", "payload": {{"text": "key {secret}"}}}}')
    committer.notify(session_change(clean, "clean"))
    committer.notify(session_change(leaky, "leaky"))
    with caplog.at_level(logging.ERROR):
        committer.flush()

    assert git(root, "ls-tree", "-r", "--name-only", "HEAD").split() == ["sessions/clean/events.jsonl"]
    assert subjects(root) == ["session clean: +1 event"]
    assert secret in leaky.read_text(), "the working file is kept"
    assert "sessions/leaky/events.jsonl" in caplog.text
    assert "MY_SERVICE_TOKEN" in caplog.text
    assert secret not in caplog.text
    assert committer.files_refused == 1

    # later appends to the leaky file are still refused: the secret is still in it
    append_event(root, "leaky", "{}")
    committer.notify(session_change(leaky, "leaky"))
    committer.flush()
    assert secret not in git(root, "log", "-p", "--all")
    assert git(root, "status", "--porcelain", "--untracked-files=all").split() == [
        "??",
        "sessions/leaky/events.jsonl",
    ]


@pytest.mark.parametrize("where", ["here", "apart"])
def test_a_file_held_back_for_a_secret_is_known_until_a_commit_takes_it(
    root: Path, repo: GitRepo, where: str
) -> None:
    """The log alone said a file was held back; /readyz and doctor read `held_back`."""
    secret = "super-secret-value-42"
    committer = Committer(
        repo,
        guard=SecretGuard({"MY_SERVICE_TOKEN": secret}),
        separate_process_from=1 if where == "apart" else None,
    )
    try:
        daily = root / "memory" / "helper" / "2026-12-07.md"
        daily.parent.mkdir(parents=True)
        daily.write_text(f"- pasted by hand: {secret}\n")
        committer.notify(Change((daily,), "memory", "helper", "edit"))
        committer.flush()
        assert committer.held_back == {"memory/helper/2026-12-07.md": ("MY_SERVICE_TOKEN",)}

        daily.write_text("- I like hiking\n")  # the secret taken out
        committer.notify(Change((daily,), "memory", "helper", "edit"))
        committer.flush()
        assert committer.held_back == {}
        assert git(root, "ls-tree", "-r", "--name-only", "HEAD").split() == ["memory/helper/2026-12-07.md"]
    finally:
        committer.close()


def test_a_key_shaped_token_appended_to_a_committed_file_blocks_that_file(root: Path, repo: GitRepo) -> None:
    committer = Committer(repo, guard=SecretGuard())
    path = append_event(root, "s1", '{"text": "hello"}')
    committer.notify(session_change(path, "s1"))
    committer.flush()
    append_event(root, "s1", '{"text": "token 123456789:AAEhBP0av28Zr0j3Cp-6ZxNMlq_wXyZ12345"}')
    committer.notify(session_change(path, "s1"))
    committer.flush()

    assert committer.commits_made == 1
    assert "AAEhBP0av28Zr0j3Cp" not in git(root, "log", "-p")
    assert git(root, "diff", "--name-only").split() == ["sessions/s1/events.jsonl"]


def test_a_token_in_a_file_name_or_a_subject_never_reaches_git(root: Path, repo: GitRepo) -> None:
    """Names come from models and clients (a memory topic, an artifact, a session id): a token a
    user pasted and the model reused as a topic must not be committed as a path or a subject."""
    token = "ghp_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
    committer = Committer(repo, guard=SecretGuard())
    named = root / "memory" / "world" / f"{token}.md"
    named.parent.mkdir(parents=True)
    named.write_text("a topic\n")
    plain = root / "memory" / "world" / "tea.md"
    plain.write_text("genmaicha\n")
    committer.notify(Change((named,), "memory", f"world: {token}", "updated"))
    committer.notify(Change((plain,), "memory", f"world: tea {token}", "updated\x1b[2K"))
    committer.flush()

    assert git(root, "ls-tree", "-r", "--name-only", "HEAD").split() == ["memory/world/tea.md"]
    history = git(root, "log", "--format=%B", "--all")
    assert token not in history
    assert "[REDACTED:GITHUB_TOKEN]" in history
    assert "\x1b" not in history
    assert "\\x1b[2K" in history
    assert named.exists()


def test_a_file_named_like_an_sk_word_is_committed_but_one_named_by_a_key_is_not(
    root: Path, repo: GitRepo
) -> None:
    committer = Committer(repo, guard=SecretGuard())
    world = root / "memory" / "world"
    world.mkdir(parents=True)
    notes = world / "sk-learn-model-notes.md"
    key = world / "sk-or-v1-0f3a9c2e7b1d4f6a8c0e2b4d6f8a0c2e.md"
    for path in (notes, key):
        path.write_text("a topic\n")
        committer.notify(Change((path,), "memory", "world", "updated"))
    committer.flush()

    committed = git(root, "ls-tree", "-r", "--name-only", "HEAD").split()
    assert committed == ["memory/world/sk-learn-model-notes.md"]
    assert key.exists()


# --- large batches: committed by a separate, lower-priority process, as the worker would --------


@pytest.fixture
def apart(root: Path) -> Iterator[Committer]:
    secret = "super-secret-value-42"
    committer = Committer(
        GitRepo.open_or_init(root),
        debounce=3600,
        max_delay=3600,
        author="Assistant Bot <bot@example.test>",
        guard=SecretGuard({"MY_SERVICE_TOKEN": secret}),
        separate_process_from=2,
    )
    committer.start()
    yield committer
    committer.close(timeout=15)


def commit_process_pid(committer: Committer) -> int:
    process = committer._commit_process
    assert process is not None
    assert process.pid is not None
    return process.pid


def test_a_large_batch_is_committed_apart_at_a_lower_priority_as_the_worker_would(
    root: Path, apart: Committer, caplog: pytest.LogCaptureFixture
) -> None:
    committer = apart
    memory = root / "memory" / "assistant" / "MEMORY.md"
    memory.parent.mkdir(parents=True)
    memory.write_text("- likes tea\n")
    leaky = append_event(root, "leaky", "key super-secret-value-42")
    for session in ("s1", "s2"):
        path = append_event(root, session, "{}")
        committer.notify(Change((path,), "session", session, "+1 events"))
    committer.notify(Change((leaky,), "session", "leaky", "+1 events"))
    committer.notify(Change((memory,), "memory", "assistant", "facts +1"))
    with caplog.at_level(logging.ERROR):
        committer.flush(timeout=30)

    pid = commit_process_pid(committer)
    assert pid != os.getpid()
    assert os.getpriority(os.PRIO_PROCESS, pid) > os.getpriority(os.PRIO_PROCESS, 0)
    # the lower priority counts only inside the server's session: each session is a scheduling
    # group of its own on Linux (autogroup), and the groups share the CPU as equals
    assert os.getsid(pid) == os.getsid(0)
    assert os.getpgid(pid) != os.getpgid(0)  # the terminal's Ctrl-C is the server's to handle
    # memory apart from session logs, the agent's author, the secret refused and logged here
    assert git(root, "log", "--format=%an|%s").splitlines() == [
        "Assistant Bot|2 sessions: 2 events",
        "Assistant Bot|memory assistant: facts +1",
    ]
    assert "sessions/leaky/events.jsonl" not in git(root, "ls-tree", "-r", "--name-only", "HEAD")
    assert "sessions/leaky/events.jsonl" in caplog.text
    assert "MY_SERVICE_TOKEN" in caplog.text
    assert (committer.commits_made, committer.files_refused) == (2, 1)
    assert committer.last_commit == git(root, "rev-parse", "HEAD").strip()
    assert git(root, "status", "--porcelain", "--untracked-files=no") == ""


def test_a_batch_whose_commit_process_died_is_committed_by_a_new_one(root: Path, apart: Committer) -> None:
    committer = apart
    for session in ("s1", "s2"):
        committer.notify(Change((append_event(root, session, "{}"),), "session", session, "+1 events"))
    committer.flush(timeout=30)
    first = commit_process_pid(committer)
    os.kill(first, signal.SIGKILL)

    for session in ("s1", "s2"):
        committer.notify(Change((append_event(root, session, "{}"),), "session", session, "+1 events"))
    with pytest.raises(CommitFailed, match="commit process ended"):
        committer.flush(timeout=30)
    committer.flush(timeout=30)  # retried (after a backoff) in a new process

    assert commit_process_pid(committer) != first
    assert git(root, "show", "HEAD:sessions/s1/events.jsonl") == "{}\n{}\n"
    assert committer.last_error is None


@pytest.mark.parametrize("refs", ["loose", "packed"])
def test_a_stores_bytes_are_never_committed_back_over_a_commit_made_since_they_were_written(
    root: Path, apart: Committer, refs: str
) -> None:
    """Committed apart too: the commit process is told what each write replaced."""
    memory = root / "memory" / "assistant" / "MEMORY.md"
    memory.parent.mkdir(parents=True)
    memory.write_text("- likes tea\n")
    git(root, "add", "memory")
    git(root, "commit", "-q", "-m", "memory by hand")
    if refs == "packed":
        git(root, "pack-refs", "--all")  # as `git gc` leaves them
    written = b"- likes tea\n- the agent wrote this\n"
    memory.write_bytes(written)
    apart.notify(Change((memory,), "memory", "assistant", "facts +1", content=written))
    memory.write_text("- likes tea\n- the agent wrote this\n- the person wrote this\n")
    git(root, "commit", "-q", "-am", "the person's commit, within the commit delay")
    for session in ("s1", "s2"):
        apart.notify(session_change(append_event(root, session, "{}"), session))
    apart.flush(timeout=30)

    assert git(root, "log", "--format=%s", "--", "memory").splitlines() == [
        "the person's commit, within the commit delay",
        "memory by hand",
    ]
    assert git(root, "status", "--porcelain", "--untracked-files=no") == ""
    assert commit_process_pid(apart) != os.getpid()


SERVER_WITH_A_COMMIT_PROCESS = """
import sys
from pathlib import Path
from duragent.stores.base import Change
from duragent.vcs.committer import Committer
from duragent.vcs.repo import GitRepo

root = Path(sys.argv[1])
repo = GitRepo.open_or_init(root)
repo.lock_timeout = 600
committer = Committer(repo, debounce=3600, max_delay=3600, separate_process_from=1)
committer.start()
path = root / "sessions" / "s1" / "events.jsonl"
path.parent.mkdir(parents=True)
for line in sys.stdin:  # each line: one more event, committed by the commit process
    with path.open("a") as log:
        log.write("{}\\n")
    committer.notify(Change((path,), "session", "s1", "+1 events"))
    committer.flush(timeout=3600)
    print(committer._commit_process.pid, flush=True)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="the kernel's parent-death signal is Linux's")
def test_a_commit_in_hand_ends_with_a_server_killed_by_sigkill(root: Path) -> None:
    # Left running, the commit would write the person's index after the restarted server's.
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER_WITH_A_COMMIT_PROCESS, str(root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdin is not None
    assert server.stdout is not None
    server.stdin.write("commit\n")
    server.stdin.flush()
    child = int(server.stdout.readline())
    lock = root / ".git" / "index.lock"
    lock.touch()  # the next commit waits for it (for up to 600 s)
    server.stdin.write("commit\n")
    server.stdin.flush()
    # until it has the batch and waits for the lock
    assert wait_until(lambda: not _waiting_for_input(child), timeout=30), (
        "the commit process never took the second batch"
    )
    os.kill(server.pid, signal.SIGKILL)
    server.wait()
    assert wait_until(lambda: _process_state(child) == "gone", timeout=30), (
        "the commit process outlived its server"
    )
    lock.unlink()


def _waiting_for_input(pid: int) -> bool:
    """True while the process is blocked reading (system call 0 on x86-64, 63 on arm64)."""
    call = Path(f"/proc/{pid}/syscall").read_text().split()[0]
    return call in ("0", "63")


def _process_state(pid: int) -> str:
    """The process's state letter (`ps`), or "gone" when it has ended (a zombie counts)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return "gone"
    return "gone" if state == "Z" else state


# --- commit messages -----------------------------------------------------------------------------


def test_one_subject_reads_as_one_line_and_merges_counts() -> None:
    message = commit_message(
        [
            Change((Path("a"),), "session", "s_01HX", "turn 12 (+5 events)"),
            Change((Path("a"),), "session", "s_01HX", "turn 13 (+4 events)"),
        ]
    )
    subject, _, rest = message.partition("\n\n")
    assert subject == "session s_01HX: turn 12-13 (+9 events)"
    assert rest.splitlines() == ["Duragent-Kind: session", "Duragent-Session: s_01HX"]


def test_counts_add_up_across_singular_and_plural_and_other_phrases_are_kept() -> None:
    summaries = ["turn 3 (+1 event)", "snapshot at seq 20", "turn 4 (+6 events)", "snapshot at seq 20"]
    message = commit_message([Change((Path("a"),), "session", "s1", summary) for summary in summaries])
    assert message.splitlines()[0] == "session s1: turn 3-4 (+7 events), snapshot"


def test_a_mixed_batch_has_a_summary_subject_a_line_per_change_and_trailers() -> None:
    message = commit_message(
        [
            Change((Path("a"),), "session", "s1", "turn 1 (+20 events)"),
            Change((Path("b"),), "session", "s2", "turn 4 (+12 events)", ("tool_call bash",)),
            Change((Path("c"),), "session", "s3", "turn 2 (+10 events)"),
            Change((Path("d"),), "memory", "assistant", "2026-11-26 facts +1"),
        ]
    )
    subject, body, trailers = message.strip().split("\n\n")
    assert subject == "3 sessions, memory assistant: 42 events, facts +1"
    assert body.splitlines() == [
        "- session s1: turn 1 (+20 events)",
        "- session s2: turn 4 (+12 events)",
        "  tool_call bash",
        "- session s3: turn 2 (+10 events)",
        "- memory assistant: 2026-11-26 facts +1",
    ]
    assert trailers.splitlines() == [
        "Duragent-Kind: session",
        "Duragent-Kind: memory",
        "Duragent-Session: s1",
        "Duragent-Session: s2",
        "Duragent-Session: s3",
        "Duragent-Agent: assistant",
    ]


# --- shutdown -------------------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import signal, sys, time
    from pathlib import Path
    from duragent.stores.base import Change
    from duragent.vcs.committer import Committer
    from duragent.vcs.repo import GitRepo

    root = Path(sys.argv[1])
    committer = Committer(GitRepo.open_or_init(root), debounce=60, max_delay=120)
    committer.start()

    def on_sigterm(signum, frame):
        committer.close(timeout=10)
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_sigterm)
    path = root / "sessions" / "s1" / "events.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text('{"seq": 1}\\n')
    committer.notify(Change((path,), "session", "s1", "turn 1 (+1 events)"))
    print("ready", flush=True)
    while True:
        time.sleep(0.05)
    """
)


@pytest.mark.slow
def test_sigterm_commits_what_is_pending_before_the_process_exits(root: Path, tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    child = subprocess.Popen(
        [sys.executable, str(script), str(root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        assert commit_count(root) == 0
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=15) == 0
    finally:
        child.kill()
    assert subjects(root) == ["session s1: turn 1 (+1 event)"]
    assert git(root, "show", "HEAD:sessions/s1/events.jsonl") == '{"seq": 1}\n'


def test_from_config_uses_the_git_settings_and_guards_configured_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from duragent.config import load_config

    (tmp_path / "duragent.yaml").write_text(
        "data_dir: data\ngit:\n  commit_debounce: 5s\n  max_commit_delay: 30s\n"
        '  author: "Ops Bot <ops@example.test>"\n'
        "server:\n  api_token: ${DURAGENT_API_TOKEN}\n"
    )
    monkeypatch.setenv("DURAGENT_API_TOKEN", "server-token-value-123")
    config = load_config(tmp_path / "duragent.yaml")
    committer = Committer.from_config(config)
    root = tmp_path / "data"
    leaky = append_event(root, "s1", "token server-token-value-123")
    clean = append_event(root, "s2", "{}")
    committer.notify(session_change(leaky, "s1"))
    committer.notify(session_change(clean, "s2"))
    committer.flush()

    assert (committer.debounce, committer.max_delay) == (5.0, 30.0)
    assert git(root, "log", "--format=%an <%ae> %s") == "Ops Bot <ops@example.test> session s2: +1 event\n"


def test_paths_reached_through_a_symlinked_folder_are_committed(tmp_path: Path) -> None:
    real = tmp_path / "real"
    GitRepo.open_or_init(real)
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    committer = Committer(GitRepo.open_or_init(real))
    committer.notify(session_change(append_event(tmp_path / "link", "s1", "{}"), "s1"))
    committer.flush()
    assert git(real, "show", "--name-only", "--format=", "HEAD").split() == ["sessions/s1/events.jsonl"]


def _commit_then_lose_the_index_update(root: Path, repo: GitRepo, name: str) -> None:
    """Commit `name` and leave what a kill after moving HEAD leaves: a note, the index a commit behind."""
    path = root / name
    path.write_text("one\n")
    repo.commit_paths([path], "first")
    path.write_text("two\n")
    repo.commit_paths([path], "second")
    git(root, "reset", "-q", "HEAD~1", "--", name)
    (repo.git_dir / "duragent-unsynced").write_text(name + "\0")


def test_a_note_left_by_a_killed_commit_waits_while_a_merge_is_in_progress(root: Path, repo: GitRepo) -> None:
    """Writing its entries then would drop the person's conflict entries (`git reset` of those paths)."""
    _commit_then_lose_the_index_update(root, repo, "notes.md")
    git(root, "reset", "-q")
    git(root, "checkout", "-q", "-b", "theirs", "HEAD~1")
    (root / "notes.md").write_text("theirs\n")
    git(root, "-c", "user.name=P", "-c", "user.email=p@x", "commit", "-qam", "theirs")
    git(root, "checkout", "-q", "main")
    git(root, "-c", "user.name=P", "-c", "user.email=p@x", "merge", "theirs", check=False)
    (repo.git_dir / "duragent-unsynced").write_text("notes.md\0")
    assert git(root, "ls-files", "-u", "notes.md") != ""  # conflict entries

    other = append_event(root, "s1", "{}")
    with pytest.raises(RepoBusy, match="merge"):
        repo.commit_paths([other], "session s1: +1 events")

    assert git(root, "ls-files", "-u", "notes.md") != ""
    assert (repo.git_dir / "duragent-unsynced").exists()


def test_a_commit_waits_until_the_index_entries_a_killed_commit_left_are_written(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A new note replacing the old one would leave the killed commit's files stale for good."""
    repo = GitRepo.open_or_init(root, lock_timeout=0.3)
    _commit_then_lose_the_index_update(root, repo, "notes.md")
    lock = repo.git_dir / "index.lock"
    lock.write_text("")  # a person's `git commit`, waiting in their editor

    class ReleaseWhenGivenUp(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "could not" in record.getMessage():
                lock.unlink(missing_ok=True)  # ... which ends just after we gave up

    handler = ReleaseWhenGivenUp()
    logging.getLogger("duragent.vcs.repo").addHandler(handler)
    try:
        other = append_event(root, "s1", "{}")
        with pytest.raises(RepoLocked, match="interrupted commit"):
            repo.commit_paths([other], "session s1: +1 events")
    finally:
        logging.getLogger("duragent.vcs.repo").removeHandler(handler)
    assert "notes.md" in (repo.git_dir / "duragent-unsynced").read_text()

    repo.commit_paths([other], "session s1: +1 events")
    assert git(root, "status", "--porcelain") == ""
    assert not (repo.git_dir / "duragent-unsynced").exists()


def test_a_commit_whose_head_update_failed_leaves_the_persons_staged_work_alone(root: Path) -> None:
    """No note may outlive a commit that did not move HEAD: the next commit would unstage its files."""
    repo = GitRepo.open_or_init(root, lock_timeout=0.3)
    notes = root / "notes.md"
    notes.write_text("one\n")
    repo.commit_paths([notes], "first")
    notes.write_text("two\n")
    branch_lock = repo.git_dir / "refs" / "heads" / "main.lock"
    branch_lock.write_text("")
    with pytest.raises(RepoLocked):
        repo.commit_paths([notes], "second")
    branch_lock.unlink()
    assert not (repo.git_dir / "duragent-unsynced").exists()
    notes.write_text("the person's\n")
    git(root, "add", "notes.md")

    repo.commit_paths([append_event(root, "s1", "{}")], "session s1: +1 events")

    assert git(root, "status", "--porcelain", "notes.md") == "M  notes.md\n"


def test_a_branch_lock_a_killed_git_left_is_named_in_the_commit_error(root: Path) -> None:
    """The error says which file blocks every commit and how to clear it, not "HEAD kept moving"."""
    repo = GitRepo.open_or_init(root, lock_timeout=0.3)
    notes = root / "notes.md"
    notes.write_text("one\n")
    repo.commit_paths([notes], "first")
    branch_lock = repo.git_dir / "refs" / "heads" / "main.lock"
    branch_lock.write_text("")
    old = time.time() - 120
    os.utime(branch_lock, (old, old))
    notes.write_text("two\n")
    with pytest.raises(RepoLocked, match=f"{branch_lock} is held .if no git command is running: rm "):
        repo.commit_paths([notes], "second")


def test_only_the_committing_threads_git_commands_hold_the_commit_lock(root: Path, repo: GitRepo) -> None:
    held: dict[str, tuple[int, ...]] = {}

    def screen(path: str, added: str) -> bool:
        held["committer"] = repo._held_fds()
        reader = threading.Thread(target=lambda: held.setdefault("reader", repo._held_fds()))
        reader.start()
        reader.join()
        return True

    repo.commit_paths([append_event(root, "s1", "{}")], "session s1: +1 events", screen=screen)

    assert len(held["committer"]) == 1
    assert held["reader"] == ()


def test_the_persons_index_is_written_from_a_file_never_from_a_pipe_a_kill_could_cut(
    root: Path, repo: GitRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given a cut-off last record on stdin, git adds an entry for a path that never existed."""
    from duragent.vcs import repo as repo_module

    real = repo_module._run_git
    writes: list[tuple[str, object, bytes | None]] = []

    def run_git(cwd: Path, args: list[str], **options: object) -> str:
        if args[0] in ("update-index", "reset") and "GIT_INDEX_FILE" not in (options.get("env") or {}):
            stdin = options.get("stdin")
            data = None
            if stdin is not None:
                position = stdin.tell()  # type: ignore[attr-defined]
                data = stdin.read()  # type: ignore[attr-defined]
                stdin.seek(position)  # type: ignore[attr-defined]
            writes.append((args[0], options.get("input"), data))
        return real(cwd, args, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(repo_module, "_run_git", run_git)
    path = append_event(root, "s1", "{}")
    repo.commit_paths([path], "session s1: +1 events")
    git(root, "rm", "-q", "--cached", "sessions/s1/events.jsonl")  # as a crash would leave it
    repo.commit_paths([path], "session s1: +1 events")  # repairs

    assert [name for name, _, _ in writes if name == "reset"] == ["reset"]
    for _name, given, _data in writes:
        assert given is None
    assert any(data and b"sessions/s1/events.jsonl\0" in data for _, _, data in writes)
    assert git(root, "status", "--porcelain") == ""


KILLED_BEFORE_MOVING_HEAD = """
import os, signal, sys
from pathlib import Path
from duragent.vcs.repo import GitRepo

root = Path(sys.argv[1])
repo = GitRepo.open_or_init(root)
note = repo._note_pending_sync


def note_then_die(*args):
    note(*args)
    os.kill(os.getpid(), signal.SIGKILL)  # before update-ref: HEAD never moves


repo._note_pending_sync = note_then_die
repo.commit_paths([root / "notes.md"], "second")
"""


def test_a_note_left_by_a_commit_killed_before_head_moved_unstages_nothing(root: Path, repo: GitRepo) -> None:
    notes = root / "notes.md"
    notes.write_text("one\n")
    repo.commit_paths([notes], "first")
    notes.write_text("two\n")
    killed = subprocess.run([sys.executable, "-c", KILLED_BEFORE_MOVING_HEAD, str(root)], check=False)
    assert killed.returncode == -signal.SIGKILL
    assert (repo.git_dir / "duragent-unsynced").exists()
    assert subjects(root) == ["first"]
    notes.write_text("the person's\n")
    git(root, "add", "notes.md")

    repo.commit_paths([append_event(root, "s1", "{}")], "session s1: +1 events")

    assert git(root, "status", "--porcelain", "notes.md") == "M  notes.md\n"
    assert not (repo.git_dir / "duragent-unsynced").exists()


async def test_a_sessions_first_turn_reads_in_git_log_oneline_as_what_happened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not `+2 events; snapshot at seq 1; turn 1 (+1 event)`: the store's notes, made readable."""
    from duragent.config import load_config
    from duragent.scaffold import init_workspace
    from duragent.sessions.log import SessionLog
    from duragent.workspace import Workspace

    init_workspace(tmp_path / "ws")
    monkeypatch.chdir(tmp_path / "ws")
    async with Workspace(load_config()) as workspace:
        log = await SessionLog.create(workspace.stores.sessions, agent="assistant")
        await log.append("user_message", {"content": "hi", "turn": 1})
        await log.snapshot()
        await log.append("assistant_message", {"content": "hello"})

    oneline = git(tmp_path / "ws" / ".duragent", "log", "--oneline", "-1")
    # (the id cut to its time part; whole in the trailer)
    assert (
        oneline.split(" ", 1)[1] == f"session {log.session_id[:12]}: started, turn 1 (+3 events), snapshot\n"
    )
    trailers = git(tmp_path / "ws" / ".duragent", "log", "-1", "--format=%(trailers)")
    assert trailers == f"Duragent-Kind: session\nDuragent-Session: {log.session_id}\n\n"


def test_subjects_of_full_ids_fit_git_log_oneline_and_the_ids_stay_whole_below(
    root: Path, repo: GitRepo
) -> None:
    from duragent.vcs.history import read_history

    session, schedule = "s_01JD8R2K4QABCDEFGHJKMNPQRS", "sch_01JD8R2K4QZYXWVTSRQPNMKJHG"
    schedule_file = root / "schedules" / f"{schedule}.yaml"
    schedule_file.parent.mkdir(parents=True)
    schedule_file.write_text("every: 1h\n")
    committer = Committer(repo)
    committer.notify(session_change(append_event(root, session, "{}"), session, "turn 1 (+2 events)"))
    committer.notify(Change((schedule_file,), "schedule", schedule, f"ran: delivered to session {session}"))
    committer.flush()

    subject, *_ = git(root, "log", "-1", "--format=%B").split("\n\n")
    assert subject == "session s_01JD8R2K4Q, schedule sch_01JD8R2K4Q: 2 events"
    assert max(len(line) for line in git(root, "log", "--format=%s").splitlines()) <= 72
    assert f"- schedule {schedule}: ran: delivered to session {session}" in git(
        root, "log", "-1", "--format=%b"
    )
    assert f"Duragent-Session: {session}\n" in git(root, "log", "-1", "--format=%(trailers)")
    assert [entry.subject for entry in read_history(root, session=session)] == [subject]


def test_a_sessions_notes_merge_into_one_phrase_and_a_snapshot_alone_says_so() -> None:
    def subject(*summaries: tuple[str, tuple[str, ...]]) -> str:
        changes = [Change((Path("a"),), "session", "s1", summary, details) for summary, details in summaries]
        return commit_message(changes).splitlines()[0]

    assert subject(("snapshot at seq 40", ())) == "session s1: snapshot"
    assert subject(("+1 event", ("message_queued",))) == "session s1: +1 event"
    assert (
        subject(("turn 7 (+2 events)", ("user_message", "assistant_message")), ("+1 event", ("session_end",)))
        == "session s1: turn 7, ended (+3 events)"
    )
    assert subject(("deleted", ())) == "session s1: deleted"
