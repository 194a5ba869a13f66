"""The filesystem ArtifactStore's own promises: where bytes and metadata live, atomic puts, tidy deletes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from duragent.errors import InvalidName
from duragent.stores.base import ArtifactMeta, Change
from duragent.stores.filesystem.artifacts import FilesystemArtifactStore


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "artifacts"


async def stream(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def test_bytes_and_a_json_sidecar_land_under_the_agents_folder(root: Path) -> None:
    store = FilesystemArtifactStore(root)
    ref = await store.put(
        "assistant", "reports/q1.csv", stream(b"a,b\n", b"1,2\n"), ArtifactMeta("text/csv", extra={"k": "v"})
    )
    assert ref.id == "assistant/reports/q1.csv"
    assert ref.url is None
    assert (root / "assistant" / "reports" / "q1.csv").read_bytes() == b"a,b\n1,2\n"
    sidecar = json.loads((root / "assistant" / ".meta" / "reports" / "q1.csv.json").read_text())
    assert sidecar["content_type"] == "text/csv"
    assert sidecar["size"] == 8
    assert sidecar["sha256"] == ref.meta.sha256
    assert sidecar["extra"] == {"k": "v"}
    assert sidecar["created_at"].endswith("Z")


async def test_a_stream_that_fails_midway_leaves_no_file_and_no_temp_file(root: Path) -> None:
    store = FilesystemArtifactStore(root)

    async def broken() -> AsyncIterator[bytes]:
        yield b"partial"
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await store.put("assistant", "upload.bin", broken(), ArtifactMeta())
    assert sorted(path.name for path in (root / "assistant").iterdir()) == []


async def test_a_failed_replacement_keeps_the_previous_version(root: Path) -> None:
    store = FilesystemArtifactStore(root)
    await store.put("assistant", "a.txt", stream(b"version 1"), ArtifactMeta())

    async def broken() -> AsyncIterator[bytes]:
        yield b"version 2, half"
        raise ConnectionResetError

    with pytest.raises(ConnectionResetError):
        await store.put("assistant", "a.txt", broken(), ArtifactMeta())
    assert (root / "assistant" / "a.txt").read_bytes() == b"version 1"


async def test_a_file_copied_in_by_hand_is_listed_with_its_size(root: Path) -> None:
    store = FilesystemArtifactStore(root)
    (root / "assistant").mkdir(parents=True)
    (root / "assistant" / "dropped.pdf").write_bytes(b"%PDF-")
    [ref] = await store.list("assistant")
    assert (ref.name, ref.meta.size, ref.meta.sha256) == ("dropped.pdf", 5, None)


def tree(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


async def test_delete_removes_sidecar_and_folders_left_empty(root: Path) -> None:
    store = FilesystemArtifactStore(root)
    keep = await store.put("assistant", "keep.txt", stream(b"k"), ArtifactMeta())
    gone = await store.put("assistant", "deep/er/gone.txt", stream(b"g"), ArtifactMeta())
    await store.delete(gone)
    assert tree(root) == [
        "assistant",
        "assistant/.meta",
        "assistant/.meta/keep.txt.json",
        "assistant/keep.txt",
    ]
    assert [ref.name for ref in await store.list("assistant")] == [keep.name]


async def test_changes_name_both_files_and_say_what_happened(root: Path) -> None:
    changes: list[Change] = []
    store = FilesystemArtifactStore(root, on_change=changes.append)
    ref = await store.put("assistant", "a.txt", stream(b"1"), ArtifactMeta())
    await store.put("assistant", "a.txt", stream(b"2"), ArtifactMeta())
    await store.delete(ref)
    data, meta = root / "assistant" / "a.txt", root / "assistant" / ".meta" / "a.txt.json"
    assert [(change.paths, change.kind, change.subject, change.summary) for change in changes] == [
        ((data, meta), "artifact", "assistant", "a.txt added"),
        ((data, meta), "artifact", "assistant", "a.txt replaced"),
        ((data, meta), "artifact", "assistant", "a.txt deleted"),
    ]


async def test_a_name_cannot_be_both_a_file_and_a_folder(root: Path) -> None:
    store = FilesystemArtifactStore(root)
    await store.put("assistant", "a", stream(b"file"), ArtifactMeta())
    with pytest.raises(InvalidName):
        await store.put("assistant", "a/b.txt", stream(b"x"), ArtifactMeta())
    await store.put("assistant", "c/d.txt", stream(b"x"), ArtifactMeta())
    with pytest.raises(InvalidName):
        await store.put("assistant", "c", stream(b"x"), ArtifactMeta())
    assert [ref.name for ref in await store.list("assistant")] == ["a", "c/d.txt"]
