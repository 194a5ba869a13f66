"""S3 artifact store against moto's real HTTP server: multipart, metadata, presigned URLs, key layout."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from duragent.errors import DuragentError
from duragent.stores.base import ArtifactMeta
from duragent.stores.s3 import PART_SIZE, S3ArtifactStore, S3Error
from duragent.testing.s3 import MotoS3Server, moto_s3  # noqa: F401  (the moto_s3 fixture)


async def stream(data: bytes, chunk_size: int = 1024 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), chunk_size):
        yield data[start : start + chunk_size]


@pytest.fixture
async def store(moto_s3: MotoS3Server) -> AsyncIterator[S3ArtifactStore]:  # noqa: F811
    artifacts = S3ArtifactStore(moto_s3.create_bucket(), prefix="team-a/", **moto_s3.client_options())
    yield artifacts
    await artifacts.close()


async def test_a_large_artifact_goes_up_in_parts_and_comes_back_with_its_sha256(
    store: S3ArtifactStore,
    moto_s3: MotoS3Server,  # noqa: F811
) -> None:
    data = os.urandom(2 * PART_SIZE + 123_457)  # three parts, the last one short
    ref = await store.put(
        "assistant", "big/blob.bin", stream(data), ArtifactMeta(content_type="application/zip")
    )

    head = moto_s3.client().head_object(Bucket=store.bucket, Key="team-a/assistant/big/blob.bin")
    digest = hashlib.sha256(data).hexdigest()
    assert ref.meta.sha256 == digest
    assert ref.meta.size == len(data)
    assert head["Metadata"]["sha256"] == digest
    assert head["ContentType"] == "application/zip"
    received = hashlib.sha256()
    async for chunk in store.get(ref):
        received.update(chunk)
    assert received.hexdigest() == digest
    (listed,) = await store.list("assistant", prefix="big/")
    assert (listed.meta.sha256, listed.meta.size) == (digest, len(data))


async def test_a_small_artifact_is_one_object_under_prefix_agent_name(
    store: S3ArtifactStore,
    moto_s3: MotoS3Server,  # noqa: F811
) -> None:
    await store.put(
        "assistant", "notes/today.md", stream(b"# hi"), ArtifactMeta(content_type="text/markdown")
    )
    keys = [item["Key"] for item in moto_s3.client().list_objects_v2(Bucket=store.bucket)["Contents"]]
    assert keys == ["team-a/assistant/notes/today.md"]


async def test_the_presigned_url_downloads_the_artifact_without_credentials(store: S3ArtifactStore) -> None:
    ref = await store.put("assistant", "report.txt", stream(b"quarterly numbers"), ArtifactMeta("text/plain"))
    assert ref.url is not None
    async with aiohttp.ClientSession() as session, session.get(ref.url) as response:
        body = await response.read()
    assert response.status == 200
    assert body == b"quarterly numbers"


async def test_presigned_urls_last_as_long_as_presign_ttl(moto_s3: MotoS3Server) -> None:  # noqa: F811
    store = S3ArtifactStore(
        moto_s3.create_bucket(), presign_ttl=timedelta(minutes=5), **moto_s3.client_options()
    )
    try:
        ref = await store.put("assistant", "a.txt", stream(b"a"), ArtifactMeta())
    finally:
        await store.close()
    assert ref.url is not None
    assert parse_qs(urlsplit(ref.url).query)["X-Amz-Expires"] == ["300"]


async def test_a_failing_stream_leaves_no_object_and_no_open_upload(
    store: S3ArtifactStore,
    moto_s3: MotoS3Server,  # noqa: F811
) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield os.urandom(PART_SIZE)
        raise OSError("the producer died")

    with pytest.raises(OSError, match="producer died"):
        await store.put("assistant", "half.bin", broken(), ArtifactMeta())
    client = moto_s3.client()
    assert "Contents" not in client.list_objects_v2(Bucket=store.bucket)
    assert client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []


async def test_a_missing_bucket_is_a_clear_s3_error(moto_s3: MotoS3Server) -> None:  # noqa: F811
    store = S3ArtifactStore("no-such-bucket-here", **moto_s3.client_options())
    try:
        with pytest.raises(S3Error, match="NoSuchBucket"):
            await store.put("assistant", "a.txt", stream(b"a"), ArtifactMeta())
    finally:
        await store.close()
    assert issubclass(S3Error, DuragentError)


async def test_a_hung_s3_server_fails_the_artifact_tool_with_a_clear_error_instead_of_hanging(
    tmp_path: object,
) -> None:
    import asyncio

    from duragent.stores.s3 import S3Timeouts
    from duragent.tools.artifacts import ArtifactPutArgs, ArtifactPutTool
    from duragent.tools.base import ToolContext

    held: list[asyncio.StreamWriter] = []

    async def accept_and_say_nothing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # the connection stays open; no answer ever comes

    hung = await asyncio.start_server(accept_and_say_nothing, "127.0.0.1", 0)
    port = hung.sockets[0].getsockname()[1]
    store = S3ArtifactStore(
        "bucket",
        region="us-east-1",
        endpoint_url=f"http://127.0.0.1:{port}",
        access_key_id="test",
        secret_access_key="test",
        timeouts=S3Timeouts(connect=0.5, read=0.5, max_attempts=2),
    )
    ctx = ToolContext(agent="helper", session_id="s_1", workdir=tmp_path, artifacts=store)  # type: ignore[arg-type]
    try:
        async with asyncio.timeout(30):  # without deadlines this hangs for many minutes
            result = await ArtifactPutTool().run(ArtifactPutArgs(name="report.md", content="# hi"), ctx)
    finally:
        await store.close()
        for writer in held:
            writer.close()
        hung.close()
    assert not result.ok
    assert "did not answer in time" in result.content
    assert "services.artifacts.read_timeout" in result.content


async def test_a_presigned_url_survives_the_secret_guard_when_the_endpoint_comes_from_a_variable(
    moto_s3: MotoS3Server,  # noqa: F811
    tmp_path: object,
) -> None:
    """As `duragent init`'s template writes it (`endpoint_url: ${S3_ENDPOINT_URL}`): the tool
    result the session stores, after the guard, still downloads the artifact."""
    import re

    from duragent.config import parse_config_text
    from duragent.secrets import SecretGuard
    from duragent.tools.artifacts import ArtifactPutArgs, ArtifactPutTool
    from duragent.tools.base import ToolContext

    options = moto_s3.client_options()
    env = {"S3_ENDPOINT_URL": options["endpoint_url"], "S3_BUCKET": moto_s3.create_bucket("team-artifacts")}
    config = parse_config_text(
        "services:\n  artifacts:\n    backend: s3\n    bucket: ${S3_BUCKET}\n"
        "    endpoint_url: ${S3_ENDPOINT_URL}\n",
        env=env,
    )
    guard = SecretGuard.from_config(config, env=env)
    store = S3ArtifactStore(env["S3_BUCKET"], **options)
    ctx = ToolContext(agent="helper", session_id="s_1", workdir=tmp_path, artifacts=store)  # type: ignore[arg-type]
    try:
        result = await ArtifactPutTool().run(ArtifactPutArgs(name="report.md", content="# hi"), ctx)
    finally:
        await store.close()
    stored = guard.redact(result.content)

    [url] = re.findall(r"https?://\S+", stored)
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert (response.status, await response.text()) == (200, "# hi")


async def test_an_s3_server_that_refuses_connections_is_said_to_be_unreachable(tmp_path: object) -> None:
    """Nothing listens there: waiting longer (read_timeout) would not help, so it is not advised."""
    import socket

    from duragent.stores.s3 import S3Timeouts

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # (closed again: nothing listens on it)
    store = S3ArtifactStore(
        "bucket",
        region="us-east-1",
        endpoint_url=f"http://127.0.0.1:{port}",
        access_key_id="test",
        secret_access_key="test",
        timeouts=S3Timeouts(connect=0.5, read=0.5, max_attempts=1),
    )
    try:
        with pytest.raises(S3Error) as refused:
            await store.put(
                "helper", "report.md", stream(b"# hi"), ArtifactMeta(content_type="text/markdown")
            )
    finally:
        await store.close()

    assert "could not be reached" in str(refused.value)
    assert "read_timeout" not in str(refused.value)
