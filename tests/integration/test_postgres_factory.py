"""The factory picks each service's backend from duragent.yaml: the seed's Stage 2 mix, and clear errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import pytest

from duragent.config import parse_config_text
from duragent.errors import ConfigError
from duragent.stores.base import ArtifactMeta, MemoryEntry, SessionEvent, utcnow
from duragent.stores.factory import open_artifact_store, open_memory_store, open_session_store
from duragent.stores.filesystem.memory import FilesystemMemoryStore
from duragent.stores.postgres.sessions import PostgresSessionStore
from duragent.stores.s3 import S3ArtifactStore
from duragent.testing.postgres import temporary_schema
from duragent.testing.s3 import ACCESS_KEY_ID, SECRET_ACCESS_KEY, MotoS3Server, moto_s3  # noqa: F401


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with temporary_schema() as url:
        yield url


async def one_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_stage_two_sessions_in_postgres_memory_on_files_artifacts_in_s3(
    pg_url: str,
    moto_s3: MotoS3Server,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
    bucket = moto_s3.create_bucket()
    config = parse_config_text(
        f"data_dir: {tmp_path / 'data'}\n"
        "services:\n"
        "  session:\n    backend: postgres\n    url: ${DATABASE_URL}\n"
        "  memory:\n    backend: filesystem\n"
        f"  artifact:\n    backend: s3\n    bucket: {bucket}\n    region: us-east-1\n"
        f"    endpoint_url: {moto_s3.endpoint_url}\n    prefix: prod\n    presign_ttl: 10m\n",
        env={"DATABASE_URL": pg_url},
    )
    sessions = open_session_store(config)
    memory = open_memory_store(config)
    artifacts = open_artifact_store(config)
    try:
        assert isinstance(sessions, PostgresSessionStore)
        assert isinstance(memory, FilesystemMemoryStore)
        assert isinstance(artifacts, S3ArtifactStore)
        await sessions.append("s_stage2", SessionEvent(1, "evt_1", utcnow(), "session_start", {"agent": "a"}))
        await memory.put("assistant", MemoryEntry("kept on files", "fact", date(2026, 11, 26)))
        ref = await artifacts.put("assistant", "out.txt", one_chunk(b"in s3"), ArtifactMeta("text/plain"))
        assert [summary.agent for summary in await sessions.list()] == ["a"]
    finally:
        await sessions.close()
        await artifacts.close()
    assert (tmp_path / "data/memory/assistant/2026-11-26.md").read_text().endswith("- kept on files\n")
    assert ref.id == "assistant/out.txt"
    assert "X-Amz-Expires=600" in (ref.url or "")
    assert moto_s3.client().get_object(Bucket=bucket, Key="prod/assistant/out.txt")["Body"].read() == b"in s3"
    assert not (tmp_path / "data/sessions").exists()


def test_postgres_without_url_is_a_config_error_at_the_service(tmp_path: Path) -> None:
    config = parse_config_text("services:\n  session:\n    backend: postgres\n", env={})
    with pytest.raises(ConfigError, match=r"services\.session\.url is required") as raised:
        open_session_store(config)
    assert raised.value.problems[0].location is not None
    assert raised.value.problems[0].location.line == 3


def test_s3_without_bucket_is_a_config_error(tmp_path: Path) -> None:
    config = parse_config_text("services:\n  artifacts:\n    backend: s3\n    region: eu-west-1\n", env={})
    with pytest.raises(ConfigError, match=r"services\.artifacts\.bucket is required"):
        open_artifact_store(config)
