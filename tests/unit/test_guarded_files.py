"""GuardedFiles puts back what a batch of unasked tool calls changed, and never deletes what it
could not see before the batch."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from duragent.runtime.guarded_files import GuardedFiles, _Entry
from tests.waiting import Held, until


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


async def test_an_allow_always_saved_while_another_batchs_walk_runs_is_kept(data: Path) -> None:
    """The walk runs in the guard's thread; the person's change waits for it, then joins the
    snapshot it took, so the batch's end does not undo it."""
    guard = GuardedFiles(data, data / "agents")
    policy = data / "agents" / "helper" / "policy.yaml"
    walk = guard.snapshot = Held(guard.snapshot)  # type: ignore[method-assign]
    opening = asyncio.create_task(guard.begin_batch())
    await until(walk.entered.is_set)

    def allow_always() -> Path:
        policy.write_text("mode: ask\nallow: [bash:ls]\n")
        return policy

    saving = asyncio.create_task(guard.keep(allow_always, then=lambda _path: None))
    await asyncio.sleep(0)  # (its job is queued behind the walk)
    assert policy.read_text() == "mode: ask\n"
    walk.release.set()
    before = await opening
    assert await saving == policy
    changed = await guard.end_batch(before, undo=True)

    assert changed == []
    assert policy.read_text() == "mode: ask\nallow: [bash:ls]\n"


async def test_a_batch_undone_while_another_batch_walks_is_not_put_back_by_it(data: Path) -> None:
    """Session B's script writes the policy; session A's walk starts and sees it; B's end, asked
    for meanwhile, undoes it once A's walk is over, and A's end keeps it undone."""
    guard = GuardedFiles(data, data / "agents")
    policy = data / "agents" / "helper" / "policy.yaml"
    b_before = await guard.begin_batch()
    policy.write_text("mode: allow\n")  # B's unasked change
    walk = guard.snapshot = Held(guard.snapshot)  # type: ignore[method-assign]
    a_opening = asyncio.create_task(guard.begin_batch())
    await until(walk.entered.is_set)
    b_ending = asyncio.create_task(guard.end_batch(b_before, undo=True))
    walk.release.set()

    assert await b_ending == [policy]
    assert policy.read_text() == "mode: ask\n"
    a_before = await a_opening
    assert await guard.end_batch(a_before, undo=True) == []
    assert policy.read_text() == "mode: ask\n"


async def test_the_undo_of_a_batch_whose_turn_is_cancelled_still_runs_to_its_end(data: Path) -> None:
    guard = GuardedFiles(data, data / "agents")
    policy = data / "agents" / "helper" / "policy.yaml"
    before = await guard.begin_batch()
    policy.write_text("mode: allow\n")
    walk = guard.snapshot = Held(guard.snapshot)  # type: ignore[method-assign]
    ending = asyncio.create_task(guard.end_batch(before, undo=True))
    await until(walk.entered.is_set)

    ending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await ending
    walk.release.set()

    await until(lambda: policy.read_text() == "mode: ask\n")


async def test_an_allow_always_saved_for_a_cancelled_turn_is_still_reported(data: Path) -> None:
    """The policy is written all the same once its job has started: the report that makes git
    show it as the agent's change must not be lost with the turn."""
    guard = GuardedFiles(data, data / "agents")
    policy = data / "agents" / "helper" / "policy.yaml"
    walk = guard.snapshot = Held(guard.snapshot)  # type: ignore[method-assign]
    opening = asyncio.create_task(guard.begin_batch())
    await until(walk.entered.is_set)
    reported: list[Path] = []

    def allow_always() -> Path:
        policy.write_text("mode: ask\nallow: [bash:ls]\n")
        return policy

    saving = asyncio.create_task(guard.keep(allow_always, then=reported.append))
    await asyncio.sleep(0)  # (its job is queued behind the walk)
    saving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await saving
    walk.release.set()
    await opening

    await until(lambda: reported == [policy])
    assert policy.read_text() == "mode: ask\nallow: [bash:ls]\n"
