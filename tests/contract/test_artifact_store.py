"""ArtifactStore contract: the behaviour every backend (files now, S3 later) must show.

Add a backend by adding a factory to ARTIFACT_BACKENDS; every test here then runs against it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest

from duragent.errors import InvalidName
from duragent.stores.base import ArtifactMeta, ArtifactNotFound, ArtifactRef, ArtifactStore
from duragent.stores.filesystem.artifacts import FilesystemArtifactStore
from duragent.testing.s3 import MotoS3Server, moto_s3  # noqa: F401  (the moto_s3 fixture)

#: A backend: given the test's fixture request (for tmp_path, servers), a fresh store, cleaned up after.
ArtifactStoreFactory = Callable[[pytest.FixtureRequest], AbstractAsyncContextManager[ArtifactStore]]


@asynccontextmanager
async def make_fs_artifact_store(request: pytest.FixtureRequest) -> AsyncIterator[ArtifactStore]:
    tmp_path: Path = request.getfixturevalue("tmp_path")
    yield FilesystemArtifactStore(tmp_path / "artifacts")


@asynccontextmanager
async def make_s3_artifact_store(request: pytest.FixtureRequest) -> AsyncIterator[ArtifactStore]:
    """S3 on moto's standalone server (one per test session), a fresh bucket per test."""
    from duragent.stores.s3 import S3ArtifactStore

    server: MotoS3Server = request.getfixturevalue("moto_s3")
    store = S3ArtifactStore(server.create_bucket(), prefix="contract", **server.client_options())
    try:
        yield store
    finally:
        await store.close()


ARTIFACT_BACKENDS: dict[str, ArtifactStoreFactory] = {
    "fs": make_fs_artifact_store,
    "s3": make_s3_artifact_store,
}


@pytest.fixture(params=sorted(ARTIFACT_BACKENDS))
async def artifact_store(request: pytest.FixtureRequest) -> AsyncIterator[ArtifactStore]:
    async with ARTIFACT_BACKENDS[request.param](request) as store:
        yield store
        await store.close()


async def stream(data: bytes, chunk_size: int = 100_000) -> AsyncIterator[bytes]:
    for start in range(0, len(data), chunk_size):
        yield data[start : start + chunk_size]


async def read_all(store: ArtifactStore, ref: ArtifactRef) -> bytes:
    return b"".join([chunk async for chunk in store.get(ref)])


async def put_bytes(
    store: ArtifactStore, name: str, data: bytes = b"x", agent: str = "assistant"
) -> ArtifactRef:
    return await store.put(agent, name, stream(data), ArtifactMeta(content_type="text/plain"))


async def test_a_few_megabytes_stream_in_and_out_unchanged_with_size_and_sha256(
    artifact_store: ArtifactStore,
) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    ref = await artifact_store.put(
        "assistant",
        "reports/summary.bin",
        stream(data),
        ArtifactMeta(content_type="application/x-test", extra={"session": "s_1"}),
    )
    assert ref.name == "reports/summary.bin"
    assert ref.meta.size == len(data)
    assert ref.meta.sha256 == hashlib.sha256(data).hexdigest()
    assert ref.meta.content_type == "application/x-test"
    assert ref.meta.extra == {"session": "s_1"}
    assert ref.meta.created_at is not None
    chunks = [chunk async for chunk in artifact_store.get(ref)]
    assert len(chunks) > 1, "get streams in chunks"
    assert b"".join(chunks) == data


async def test_an_empty_artifact_round_trips(artifact_store: ArtifactStore) -> None:
    ref = await put_bytes(artifact_store, "empty.txt", b"")
    assert ref.meta.size == 0
    assert await read_all(artifact_store, ref) == b""


async def test_putting_the_same_name_again_replaces_the_content(artifact_store: ArtifactStore) -> None:
    await put_bytes(artifact_store, "notes.txt", b"old")
    ref = await put_bytes(artifact_store, "notes.txt", b"new content")
    assert await read_all(artifact_store, ref) == b"new content"
    listed = await artifact_store.list("assistant")
    assert [(item.name, item.meta.size) for item in listed] == [("notes.txt", 11)]


async def test_list_returns_metadata_sorted_by_name_filtered_by_prefix_and_limited(
    artifact_store: ArtifactStore,
) -> None:
    for name in ["b.txt", "reports/2026/q2.csv", "a.txt", "reports/2026/q1.csv", "reports.md"]:
        await put_bytes(artifact_store, name, name.encode())
    all_names = [ref.name for ref in await artifact_store.list("assistant")]
    assert all_names == ["a.txt", "b.txt", "reports.md", "reports/2026/q1.csv", "reports/2026/q2.csv"]
    assert [ref.name for ref in await artifact_store.list("assistant", prefix="reports/")] == [
        "reports/2026/q1.csv",
        "reports/2026/q2.csv",
    ]
    assert [ref.name for ref in await artifact_store.list("assistant", prefix="rep", limit=2)] == [
        "reports.md",
        "reports/2026/q1.csv",
    ]
    first = (await artifact_store.list("assistant", limit=1))[0]
    assert first.meta.sha256 == hashlib.sha256(b"a.txt").hexdigest()
    assert first.meta.content_type == "text/plain"
    assert await read_all(artifact_store, first) == b"a.txt"


async def test_artifacts_are_kept_per_agent(artifact_store: ArtifactStore) -> None:
    await put_bytes(artifact_store, "mine.txt", agent="assistant")
    assert await artifact_store.list("helper") == []


async def test_a_deleted_artifact_is_gone_for_get_list_and_delete(artifact_store: ArtifactStore) -> None:
    ref = await put_bytes(artifact_store, "tmp/scratch.txt", b"bye")
    await artifact_store.delete(ref)
    assert await artifact_store.list("assistant") == []
    with pytest.raises(ArtifactNotFound):
        await read_all(artifact_store, ref)
    with pytest.raises(ArtifactNotFound):
        await artifact_store.delete(ref)


async def test_a_ref_rebuilt_from_its_id_reads_the_artifact(artifact_store: ArtifactStore) -> None:
    ref = await put_bytes(artifact_store, "docs/readme.md", b"# hi")
    rebuilt = ArtifactRef(id=ref.id, name=ref.name, url=None, meta=ArtifactMeta())
    assert await read_all(artifact_store, rebuilt) == b"# hi"


@pytest.mark.parametrize(
    "name",
    [
        "../escape.txt",
        "a/../../b",
        "/etc/passwd",
        ".meta/x.json",
        "a//b",
        "a/",
        "",
        ".hidden",
        "a/./b",
        "a\\b",
    ],
)
async def test_names_that_could_escape_or_hide_are_refused(artifact_store: ArtifactStore, name: str) -> None:
    with pytest.raises(InvalidName):
        await put_bytes(artifact_store, name)
    assert await artifact_store.list("assistant") == []


async def test_an_unsafe_agent_name_is_refused(artifact_store: ArtifactStore) -> None:
    with pytest.raises(InvalidName):
        await put_bytes(artifact_store, "ok.txt", agent="../other")
    with pytest.raises(InvalidName):
        await artifact_store.list("../other")
