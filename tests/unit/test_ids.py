"""Ids are unique and sort by creation time, across milliseconds, bulk entropy draws and forks."""

from __future__ import annotations

import os

from duragent.ids import new_id, ulid


def test_ids_are_unique_and_sort_in_creation_order_across_many_entropy_draws() -> None:
    made = [ulid() for _ in range(5_000)]  # many times one draw of the OS's random bytes

    assert len(set(made)) == len(made)
    assert made == sorted(made)
    assert all(len(value) == 26 for value in made)
    assert new_id("s").startswith("s_")


def test_a_forked_child_does_not_repeat_its_parents_random_bytes() -> None:
    ulid()  # the parent holds undrawn random bytes when it forks
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child process
        os.write(write_end, "".join(ulid()[10:] for _ in range(3)).encode())
        os._exit(0)
    os.close(write_end)
    os.waitpid(child, 0)
    with os.fdopen(read_end) as pipe:
        childs = pipe.read()
    parents = [ulid()[10:] for _ in range(3)]

    assert len(childs) == 3 * 16
    assert not any(part in childs for part in parents)
