"""GuardedFiles puts back what a batch of unasked tool calls changed, and never deletes what it
could not see before the batch."""

from __future__ import annotations

from pathlib import Path

import pytest

from duragent.runtime.guarded_files import GuardedFiles, _Entry


@pytest.fixture
def data(tmp_path: Path) -> Path:
    folder = tmp_path / "ws" / ".duragent"
    (folder / "agents" / "helper").mkdir(parents=True)
    (folder / "agents" / "helper" / "agent.yaml").write_text("name: helper\n")
    (folder / "agents" / "helper" / "policy.yaml").write_text("mode: ask\n")
    return folder


def undo_batch(guard: GuardedFiles, change: object) -> list[Path]:
    before = guard.snapshot()
    assert callable(change)
    change()
    after = guard.snapshot()
    changed = guard.changed(before, after)
    guard.restore(before, after, changed)
    return changed


def test_a_folder_made_unreadable_gets_its_mode_back_and_keeps_its_files(data: Path) -> None:
    guard = GuardedFiles(data, data / "agents")
    helper = data / "agents" / "helper"

    changed = undo_batch(guard, lambda: helper.chmod(0o000))

    assert helper in changed
    assert helper.stat().st_mode & 0o777 == 0o755
    assert (helper / "policy.yaml").read_text() == "mode: ask\n"


def test_a_symlink_swapped_for_a_definition_folder_is_replaced_by_the_folder(
    data: Path, tmp_path: Path
) -> None:
    guard = GuardedFiles(data, data / "agents")
    helper = data / "agents" / "helper"
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "policy.yaml").write_text("mode: allow\n")

    def swap() -> None:
        for child in helper.iterdir():
            child.unlink()
        helper.rmdir()
        helper.symlink_to(evil)

    undo_batch(guard, swap)

    assert not helper.is_symlink()
    assert (helper / "policy.yaml").read_text() == "mode: ask\n"
    assert (evil / "policy.yaml").read_text() == "mode: allow\n"  # nothing written through the link


def test_nothing_is_deleted_under_a_folder_that_could_not_be_listed_before(data: Path) -> None:
    guard = GuardedFiles(data, data / "agents")
    before = guard.snapshot()
    # as if the walk before had failed to list agents/helper
    helper = data / "agents" / "helper"
    seen = {
        path: entry for path, entry in before.items() if not path.is_relative_to(helper) or path == helper
    }
    seen[helper] = _Entry("unlisted", before[helper].stamp)
    after = guard.snapshot()

    guard.restore(seen, after, guard.changed(seen, after))

    assert (helper / "agent.yaml").exists()
    assert (helper / "policy.yaml").exists()


def test_two_batches_at_once_never_put_back_what_the_first_one_undid(data: Path) -> None:
    """Session B's script writes the policy; session A's batch starts meanwhile (its snapshot
    sees B's write); B's end undoes it; A's end must not write it back as A's "before"."""
    guard = GuardedFiles(data, data / "agents")
    policy = data / "agents" / "helper" / "policy.yaml"
    b_before = guard.open()
    policy.write_text("mode: allow\n")  # B's unasked change
    a_before = guard.open()
    guard.close(b_before)
    b_after = guard.snapshot()
    guard.restore(b_before, b_after, guard.changed(b_before, b_after))
    assert policy.read_text() == "mode: ask\n"

    guard.close(a_before)
    a_after = guard.snapshot()
    guard.restore(a_before, a_after, guard.changed(a_before, a_after))

    assert policy.read_text() == "mode: ask\n"


def test_an_allow_always_written_while_a_snapshot_is_taken_is_kept(data: Path) -> None:
    guard = GuardedFiles(data, data / "agents")
    policy = data / "agents" / "helper" / "policy.yaml"
    walk = guard.snapshot

    def snapshot_with_a_person_deciding_meanwhile() -> dict[Path, _Entry]:
        taken = walk()  # the walk saw the old policy...
        policy.write_text("mode: ask\nallow: [bash:ls]\n")  # ...then "allow always" wrote it
        guard.accept([policy])
        return taken

    guard.snapshot = snapshot_with_a_person_deciding_meanwhile  # type: ignore[method-assign]
    before = guard.open()
    guard.snapshot = walk  # type: ignore[method-assign]
    guard.close(before)
    after = guard.snapshot()
    guard.restore(before, after, guard.changed(before, after))

    assert policy.read_text() == "mode: ask\nallow: [bash:ls]\n"
