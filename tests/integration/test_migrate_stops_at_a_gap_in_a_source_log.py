"""`duragent migrate` of a session whose events.jsonl has a line that cannot be read (bad disk, a
hand edit gone wrong): the log has a gap there. The report says where the source is broken and
counts only what was copied; it does not blame the target (real PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from duragent.testing.postgres import temporary_schema
from tests.integration.test_migrate import event_count, run_cli, run_json, seed_workspace


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with temporary_schema() as url:
        yield url


@pytest.fixture(autouse=True)
def no_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)


def break_line(log: Path, seq: int) -> None:
    lines = log.read_text().splitlines(keepends=True)
    assert f'"seq": {seq},' in lines[seq - 1] or f'"seq":{seq},' in lines[seq - 1]
    lines[seq - 1] = "{not json\n"
    log.write_text("".join(lines))


def test_a_source_log_with_an_unreadable_line_is_reported_as_broken_at_that_seq(
    pg_url: str, tmp_path: Path
) -> None:
    config, (long_id, short_id) = asyncio.run(seed_workspace(tmp_path / "ws"))
    break_line(tmp_path / "ws" / ".duragent" / "sessions" / long_id / "events.jsonl", 5)

    code, report = run_json(config, "--to", "postgres", "--url", pg_url, "--sessions")
    text_code, text = run_cli(config, "--to", "postgres", "--url", pg_url, "--sessions")

    assert code == 1
    by_id = {result["session_id"]: result for result in report["sessions"]}
    assert by_id[long_id]["problem"] == (
        "the source log skips from seq 4 to seq 6 (a line it cannot read?): copied up to seq 4; "
        "repair the source log and run `duragent migrate` again"
    )
    assert by_id[long_id]["events_copied"] == 4
    assert report["events_copied"] == 4 + by_id[short_id]["events_copied"]
    assert asyncio.run(event_count(pg_url)) == 4 + by_id[short_id]["events_copied"]
    assert text_code == 1
    assert "target refused" not in text
    assert f"session {long_id}: the source log skips from seq 4 to seq 6" in text
