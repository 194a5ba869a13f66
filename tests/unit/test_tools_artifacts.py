"""Artifact tools and notify_user, against the real FilesystemArtifactStore in a temp folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from duragent.stores.filesystem.artifacts import FilesystemArtifactStore
from duragent.tools.artifacts import (
    ArtifactGetArgs,
    ArtifactGetTool,
    ArtifactListArgs,
    ArtifactListTool,
    ArtifactPutArgs,
    ArtifactPutTool,
)
from duragent.tools.base import ToolContext, ToolLimits
from duragent.tools.notify import NotifyArgs, NotifyUserTool


@pytest.fixture
def ctx(tmp_path: Path) -> ToolContext:
    store = FilesystemArtifactStore(tmp_path / "artifacts")
    return ToolContext(agent="helper", session_id="s_1", workdir=tmp_path, artifacts=store)


async def test_artifact_put_get_and_list_round_trip(ctx: ToolContext, tmp_path: Path) -> None:
    put = await ArtifactPutTool().run(
        ArtifactPutArgs(
            name="reports/weekly.md", content="# Weekly\n\nAll good.\n", content_type="text/markdown"
        ),
        ctx,
    )
    await ArtifactPutTool().run(ArtifactPutArgs(name="notes.txt", content="n"), ctx)

    got = await ArtifactGetTool().run(ArtifactGetArgs(name="reports/weekly.md"), ctx)
    listed = await ArtifactListTool().run(ArtifactListArgs(prefix="reports/"), ctx)

    assert put.ok
    assert put.content == "stored artifact reports/weekly.md (20 bytes)"
    assert (
        tmp_path / "artifacts" / "helper" / "reports" / "weekly.md"
    ).read_text() == "# Weekly\n\nAll good.\n"
    assert got.content == "# Weekly\n\nAll good.\n"
    assert listed.content == "reports/weekly.md\t20 bytes\ttext/markdown"


async def test_artifact_get_of_a_missing_name_points_to_artifact_list(ctx: ToolContext) -> None:
    result = await ArtifactGetTool().run(ArtifactGetArgs(name="nope.txt"), ctx)

    assert not result.ok
    assert "artifact_list" in result.content


async def test_artifact_get_caps_long_text(tmp_path: Path) -> None:
    store = FilesystemArtifactStore(tmp_path / "artifacts")
    ctx = ToolContext(
        agent="helper",
        session_id="s",
        workdir=tmp_path,
        artifacts=store,
        limits=ToolLimits(output_cap_bytes=100),
    )
    await ArtifactPutTool().run(ArtifactPutArgs(name="long.txt", content="a" * 5000), ctx)

    result = await ArtifactGetTool().run(ArtifactGetArgs(name="long.txt"), ctx)

    assert "[… 4900 bytes cut …]" in result.content


async def test_artifact_put_with_an_escaping_name_is_refused(ctx: ToolContext, tmp_path: Path) -> None:
    result = await ArtifactPutTool().run(ArtifactPutArgs(name="../escape.txt", content="x"), ctx)

    assert not result.ok
    assert "invalid artifact name" in result.content
    assert not (tmp_path / "artifacts" / "escape.txt").exists()


async def test_notify_user_hands_the_message_to_the_session(tmp_path: Path) -> None:
    received: list[str] = []

    async def deliver(message: str) -> None:
        received.append(message)

    ctx = ToolContext(agent="helper", session_id="s", workdir=tmp_path, notify=deliver)

    result = await NotifyUserTool().run(NotifyArgs(message="Build finished"), ctx)

    assert result.ok
    assert received == ["Build finished"]


@pytest.mark.parametrize(
    ("name", "limit"),
    [
        ("a" * 1100, "the limit is 1024"),
        ("part/" + "b" * 200, "the limit for each '/'-separated part is 128"),
    ],
    ids=["whole-name", "one-part"],
)
async def test_an_over_long_artifact_name_is_refused_naming_the_length_limit(
    ctx: ToolContext, tmp_path: Path, name: str, limit: str
) -> None:
    result = await ArtifactPutTool().run(ArtifactPutArgs(name=name, content="x"), ctx)

    assert not result.ok
    assert limit in result.content
    assert not (tmp_path / "artifacts" / "helper").exists()
