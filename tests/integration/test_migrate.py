"""`duragent migrate` between files and a real PostgreSQL schema: round trip, reruns, resume, conflicts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from typer.testing import CliRunner

from duragent.cli import build_app
from duragent.config import load_config, parse_config_text
from duragent.errors import DuragentError, UsageError
from duragent.ids import new_id
from duragent.migrate import MigrationRequest, migrate, plan_moves
from duragent.sessions.log import SessionLog
from duragent.stores.base import MemoryEntry, SessionEvent, SessionStore, utcnow
from duragent.stores.filesystem.memory import FilesystemMemoryStore
from duragent.stores.filesystem.sessions import FilesystemSessionStore
from duragent.stores.postgres.pool import parse_postgres_url
from duragent.stores.postgres.sessions import PostgresSessionStore
from duragent.testing.postgres import temporary_schema

D1, D2 = date(2026, 11, 24), date(2026, 11, 25)
#: A day file a person edited: Windows line endings, a custom section, no trailing newline.
HAND_EDITED = "# 2026-11-23\r\n\r\n## Open Questions\r\n- which VPS?\r\n\r\nfree text kept as is"


class Interrupted(Exception):
    """Stands for Ctrl-C or a crash in the middle of a migration."""


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with temporary_schema() as url:
        yield url


@pytest.fixture(autouse=True)
def no_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)


def write_config(root: Path, services: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    config = root / "duragent.yaml"
    config.write_text("data_dir: .duragent\ngit:\n  enabled: false\n" + services)
    return config


def postgres_services(url: str) -> str:
    return (
        "services:\n"
        f"  session:\n    backend: postgres\n    url: '{url}'\n"
        f"  memory:\n    backend: postgres\n    url: '{url}'\n"
    )


async def seed_sessions(root: Path) -> list[str]:
    """Two sessions as the runtime writes them: snapshots every 20 events, one ended, odd payloads."""
    store = FilesystemSessionStore(root, fsync="never")
    try:
        long = await SessionLog.create(store, agent="assistant", snapshot_every=20)
        for turn in range(1, 16):
            await long.append_many(
                [
                    ("user_message", {"turn": turn, "content": f"question {turn} — ünïcödé"}),
                    ("tool_result", {"call_id": f"c{turn}", "tool": "bash", "content": "out\u0000put"}),
                    ("assistant_message", {"content": "ok", "usage": {"input_tokens": 3, "cost": 0.25}}),
                ]
            )
            await long.settle()  # a periodic snapshot is written in the background, between turns
        short = await SessionLog.create(store, agent="helper")
        await short.append("user_message", {"turn": 1, "content": "hello"})
        await short.append("session_end", {"reason": "done"})
        return [long.session_id, short.session_id]
    finally:
        await store.close()


async def seed_memory(root: Path) -> None:
    store = FilesystemMemoryStore(root)
    await store.put("assistant", MemoryEntry("User's blog is example.com", "fact", D1))
    await store.put("assistant", MemoryEntry("Chose Telegram", "decision", D1))
    await store.put("assistant", MemoryEntry("Prefers short replies", "preference", D2))
    await store.put("helper", MemoryEntry("helper's own note", "fact", D2))
    await store.write_long_term("assistant", "# Long-term\n\n- The user is Ada\n")
    await store.write_world("team", "# Team\n\n- Ada leads\n")
    (root / "assistant" / "2026-11-23.md").write_bytes(HAND_EDITED.encode())


async def seed_workspace(root: Path) -> tuple[Path, list[str]]:
    """A filesystem workspace with sessions and memory; returns its config and session ids."""
    config = write_config(root)
    data = root / ".duragent"
    session_ids = await seed_sessions(data / "sessions")
    await seed_memory(data / "memory")
    return config, session_ids


def memory_files(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*.md"))
        if not any(part.startswith(".") for part in path.relative_to(root).parts)
    }


async def records(store: SessionStore, session_id: str) -> list[dict[str, Any]]:
    return [event.to_record() for event in await store.read(session_id)]


async def all_records(store: SessionStore) -> dict[str, list[dict[str, Any]]]:
    try:
        return {
            summary.session_id: await records(store, summary.session_id) for summary in await store.list()
        }
    finally:
        await store.close()


def run_cli(config: Path, *args: str) -> tuple[int, str]:
    """Exit code and output as the `duragent` console script gives them (errors as `error: ...`)."""
    result = CliRunner().invoke(build_app(), ["--config", str(config), "migrate", *args])
    if isinstance(result.exception, DuragentError):
        return result.exception.exit_code, f"{result.output}error: {result.exception}\n"
    return result.exit_code, result.output


def run_json(config: Path, *args: str) -> tuple[int, dict[str, Any]]:
    code, output = run_cli(config, *args, "--json")
    return code, json.loads(output[: output.rindex("}") + 1])


async def event_count(url: str) -> int:
    target = parse_postgres_url(url)
    connection = await asyncpg.connect(target.dsn)
    try:
        count: int = await connection.fetchval(f'SELECT count(*) FROM "{target.schema}".events')
        return count
    finally:
        await connection.close()


# --- round trip ------------------------------------------------------------------------------------


def test_round_trip_filesystem_postgres_filesystem_gives_identical_memory_files_and_event_records(
    pg_url: str, tmp_path: Path
) -> None:
    config, session_ids = asyncio.run(seed_workspace(tmp_path / "ws"))
    original_memory = memory_files(tmp_path / "ws" / ".duragent" / "memory")
    original_events = asyncio.run(
        all_records(FilesystemSessionStore(tmp_path / "ws" / ".duragent" / "sessions"))
    )

    code, output = run_cli(config, "--to", "postgres", "--url", pg_url)
    assert code == 0, output
    assert "Copied: 49 events in 2 sessions, 6 memory files." in output
    assert "Verified: 2 sessions (49 events, sha256 per session), 6 memory files (sha256 each)." in output
    assert "Not migrated:\n  - artifacts: copy them with your storage tools" in output
    assert "session working memory" in output

    flipped = write_config(tmp_path / "pg", postgres_services(pg_url))
    back = tmp_path / "back"
    code, output = run_cli(flipped, "--to", "filesystem", "--path", str(back))
    assert code == 0, output

    assert memory_files(back / "memory") == original_memory
    assert asyncio.run(all_records(FilesystemSessionStore(back / "sessions"))) == original_events
    assert sorted(original_events) == sorted(session_ids)


async def test_snapshots_arrive_equal_so_the_target_resumes_without_replaying(
    pg_url: str, tmp_path: Path
) -> None:
    config_path, (long_id, _short_id) = await seed_workspace(tmp_path / "ws")
    source = FilesystemSessionStore(tmp_path / "ws" / ".duragent" / "sessions")
    target = PostgresSessionStore(pg_url)
    try:
        report = await migrate(load_config(config_path), MigrationRequest(to="postgres", url=pg_url), env={})
        assert report.complete, report.problems
        snapshot = await target.load_snapshot(long_id)
        assert snapshot is not None
        assert snapshot == await source.load_snapshot(long_id)
        assert snapshot.last_seq == 43  # written at creation, then after every 20 or more events
        (summary,) = [s for s in await target.list() if s.session_id == long_id]
        assert (summary.agent, summary.last_seq) == ("assistant", 46)
    finally:
        await source.close()
        await target.close()


# --- idempotent, resumable --------------------------------------------------------------------------


def test_a_rerun_copies_nothing_twice(pg_url: str, tmp_path: Path) -> None:
    config, _ids = asyncio.run(seed_workspace(tmp_path / "ws"))
    code, first = run_json(config, "--to", "postgres", "--url", pg_url)
    assert (code, first["events_copied"]) == (0, 49)

    code, second = run_json(config, "--to", "postgres", "--url", pg_url)
    assert code == 0
    assert second["events_copied"] == 0
    assert {result["action"] for result in second["sessions"]} == {"up_to_date"}
    assert {entry["action"] for entry in second["memory"]} == {"unchanged"}
    assert all(entry["verified"] for entry in second["memory"])
    assert asyncio.run(event_count(pg_url)) == 49


async def test_an_interrupted_migration_resumes_by_appending_only_the_missing_tail(
    pg_url: str, tmp_path: Path
) -> None:
    config_path, (long_id, _short_id) = await seed_workspace(tmp_path / "ws")
    config = load_config(config_path)
    batches: list[str] = []

    def crash_after_two_batches(message: str) -> None:
        batches.append(message)
        if len(batches) == 2:
            raise Interrupted

    request = MigrationRequest(to="postgres", url=pg_url, sessions=True, batch_size=10)
    with pytest.raises(Interrupted):
        await migrate(config, request, env={}, on_progress=crash_after_two_batches)
    assert await event_count(pg_url) == 20

    report = await migrate(config, request, env={})
    assert report.complete, report.problems
    by_id = {result.session_id: result for result in report.sessions}
    assert (by_id[long_id].target_last_seq, by_id[long_id].events_copied) == (20, 26)
    assert by_id[long_id].events_verified == 46
    assert await event_count(pg_url) == 49


async def test_events_and_memory_written_after_a_first_run_are_caught_up_by_the_next(
    pg_url: str, tmp_path: Path
) -> None:
    config_path, (long_id, _short_id) = await seed_workspace(tmp_path / "ws")
    config = load_config(config_path)
    data = tmp_path / "ws" / ".duragent"
    assert (await migrate(config, MigrationRequest(to="postgres", url=pg_url), env={})).complete

    store = FilesystemSessionStore(data / "sessions", fsync="never")
    log = await SessionLog.open(store, long_id)
    await log.append("user_message", {"turn": 16, "content": "one more"})
    await store.close()
    await FilesystemMemoryStore(data / "memory").put("assistant", MemoryEntry("new fact", "fact", D2))

    report = await migrate(config, MigrationRequest(to="postgres", url=pg_url), env={})
    assert report.complete, report.problems
    assert report.events_copied == 1
    changed = {entry.path: entry.action for entry in report.memory if entry.action != "unchanged"}
    assert changed == {"assistant/2026-11-25.md": "update"}
    target = PostgresSessionStore(pg_url)
    try:
        assert (await target.read(long_id))[-1].payload["content"] == "one more"
    finally:
        await target.close()


# --- what it says ---------------------------------------------------------------------------------


def test_dry_run_says_what_it_would_copy_and_creates_nothing(pg_url: str, tmp_path: Path) -> None:
    config, _ids = asyncio.run(seed_workspace(tmp_path / "ws"))
    code, output = run_cli(config, "--to", "postgres", "--url", pg_url, "--dry-run")
    assert code == 0, output
    assert "Would copy: 49 events in 2 sessions, 6 memory files." in output
    assert "would copy 46 events (seq 1-46) + snapshot" in output
    assert "Dry run: nothing was written." in output

    async def schema_exists() -> bool:
        target = parse_postgres_url(pg_url)
        connection = await asyncpg.connect(target.dsn)
        try:
            found: bool = await connection.fetchval(
                "SELECT to_regclass($1) IS NOT NULL", f"{target.schema}.events"
            )
            return found
        finally:
            await connection.close()

    assert asyncio.run(schema_exists()) is False


def test_the_services_block_printed_at_the_end_is_valid_configuration(pg_url: str, tmp_path: Path) -> None:
    config, _ids = asyncio.run(seed_workspace(tmp_path / "ws"))
    code, output = run_cli(config, "--to", "postgres", "--url", pg_url.replace("postgres@", "postgres:pw@"))
    assert code == 0, output
    block = output[output.index("services:\n") :]
    assert "pw" not in output
    assert "# and DATABASE_URL=postgresql://postgres@" in block
    parsed = parse_config_text(block, env={"DATABASE_URL": pg_url})
    assert (parsed.services.session.backend, parsed.services.memory.backend) == ("postgres", "postgres")
    assert parsed.services.session.url == pg_url


async def test_a_file_postgresql_memory_cannot_hold_is_reported_and_the_rest_still_migrates(
    pg_url: str, tmp_path: Path
) -> None:
    config_path, _ids = await seed_workspace(tmp_path / "ws")
    (tmp_path / "ws" / ".duragent" / "memory" / "assistant" / "notes.md").write_text("# Notes\n")
    report = await migrate(
        load_config(config_path), MigrationRequest(to="postgres", url=pg_url, memory=True), env={}
    )
    assert report.complete
    (skipped,) = [entry for entry in report.memory if entry.action == "skipped"]
    assert skipped.path == "assistant/notes.md"
    assert "MEMORY.md" in (skipped.problem or "")
    assert report.sessions == []  # --memory only


# --- conflicts ------------------------------------------------------------------------------------


def test_a_target_log_that_differs_is_left_alone_unless_overwrite_is_given(
    pg_url: str, tmp_path: Path
) -> None:
    config, (long_id, _short_id) = asyncio.run(seed_workspace(tmp_path / "ws"))

    async def put_a_different_session_in_postgres() -> None:
        store = PostgresSessionStore(pg_url)
        try:
            await store.append(
                long_id, SessionEvent(1, new_id("ev"), utcnow(), "session_start", {"agent": "other"})
            )
        finally:
            await store.close()

    asyncio.run(put_a_different_session_in_postgres())
    code, output = run_cli(config, "--to", "postgres", "--url", pg_url, "--sessions")
    assert code == 1
    assert f"{long_id}  CONFLICT: the logs differ at seq 1" in output
    assert "error: 1 problem(s)" in output
    assert asyncio.run(event_count(pg_url)) == 1 + 3  # the conflicting session untouched, the other copied

    code, output = run_cli(config, "--to", "postgres", "--url", pg_url, "--sessions", "--overwrite")
    assert code == 0, output
    assert f"{long_id}  replaced, copied 46 events" in output
    assert asyncio.run(event_count(pg_url)) == 49


# --- refusing what cannot be done -------------------------------------------------------------------


def test_migrating_to_postgres_without_a_url_says_where_to_give_one(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    with pytest.raises(UsageError, match=r"give --url, set services\.session\.url or the DATABASE_URL"):
        plan_moves(config, MigrationRequest(to="postgres"), env={})
    (move, _memory) = plan_moves(
        config, MigrationRequest(to="postgres"), env={"DATABASE_URL": "postgresql://db/x"}
    )
    assert move.target.url == "postgresql://db/x"


def test_a_service_already_on_the_target_backend_is_skipped_or_refused_when_asked_for(tmp_path: Path) -> None:
    config = load_config(
        write_config(tmp_path, "services:\n  session:\n    backend: postgres\n    url: postgresql://db/x\n")
    )
    (move,) = plan_moves(config, MigrationRequest(to="postgres", url="postgresql://db/x"), env={})
    assert move.service == "memory"  # Stage 2 -> 3: only memory moves
    with pytest.raises(UsageError, match=r"services\.session already uses postgres"):
        plan_moves(config, MigrationRequest(to="postgres", sessions=True), env={})
    code, output = run_cli(tmp_path / "duragent.yaml", "--to", "filesystem", "--memory")
    assert code == 2
    assert "services.memory already uses filesystem" in output


def test_a_rerun_after_an_interrupted_migration_to_files_removes_the_temp_files_it_left(
    pg_url: str, tmp_path: Path
) -> None:
    import os

    from duragent.stores.filesystem.atomic import temp_path_for

    config, session_ids = asyncio.run(seed_workspace(tmp_path / "ws"))
    assert run_cli(config, "--to", "postgres", "--url", pg_url)[0] == 0
    flipped = write_config(tmp_path / "pg", postgres_services(pg_url))
    back = tmp_path / "back"
    assert run_cli(flipped, "--to", "filesystem", "--path", str(back))[0] == 0
    # What a run killed mid-write leaves: write_atomic's temp files beside a snapshot and a day file.
    left = [
        temp_path_for(back / "sessions" / session_ids[0] / "state.yaml"),
        temp_path_for(back / "memory" / "assistant" / "2026-11-24.md"),
    ]
    for path in left:
        path.write_text("half written")
        os.utime(path, (0, 0))  # from a run long gone

    code, output = run_cli(flipped, "--to", "filesystem", "--path", str(back))
    assert code == 0, output
    assert not [path for path in left if path.exists()]
    assert not list(back.rglob("*.tmp"))
