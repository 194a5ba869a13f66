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
