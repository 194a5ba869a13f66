"""/readyz checks every store a turn needs, the S3 artifact store too, and answers within a few
seconds even while the databases have gone silent (a network partition): a load balancer's probe
gives up long before the minute it took to wait for each store in turn."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp

from duragent.testing.fake_llm import FakeLLMServer
from duragent.testing.s3 import MotoS3Server
from tests.e2e.server_harness import start_serve, write_workspace
from tests.e2e.test_worker_start_errors_name_their_key import S3_ENV, with_artifacts_in
from tests.integration.test_a_silent_database_never_holds_a_query import SilentRelay, pg_url, relay

__all__ = ["pg_url", "relay"]  # the fixtures these tests use


async def readiness(url: str) -> tuple[int, dict[str, object], float]:
    """Status, body and seconds taken of GET /readyz."""
    started = time.monotonic()
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{url}/readyz", timeout=aiohttp.ClientTimeout(90)) as ready,
    ):
        return ready.status, await ready.json(), time.monotonic() - started


async def test_readyz_is_unavailable_while_the_s3_artifact_store_is_away(
    tmp_path: Path, fake_llm: FakeLLMServer
) -> None:
    moto = MotoS3Server().start()
    config = write_workspace(tmp_path, fake_llm.url, git=False)
    with_artifacts_in(config, moto, moto.create_bucket())
    worker = await asyncio.to_thread(start_serve, config, tmp_path / "serve.log", env=S3_ENV)
    try:
        status, health, _ = await readiness(worker.url)
        assert status == 200, health

        moto.stop()
        status, health, seconds = await readiness(worker.url)
        assert status == 503, health
        assert health["status"] == "unavailable"
        problems = health["problems"]
        assert isinstance(problems, list)
        assert any(problem.startswith("artifact store") for problem in problems), health
        assert seconds < 8, f"/readyz took {seconds:.1f}s"
    finally:
        worker.terminate()


async def test_readyz_answers_within_seconds_while_the_session_and_memory_databases_are_silent(
    tmp_path: Path, fake_llm: FakeLLMServer, relay: tuple[SilentRelay, str]
) -> None:
    silent, url = relay
    config = write_workspace(tmp_path, fake_llm.url, git=False)
    with config.open("a") as file:
        file.write(
            f"services:\n  session:\n    backend: postgres\n    url: {url}\n"
            f"  memory:\n    backend: postgres\n    url: {url}\n"
        )
    worker = await asyncio.to_thread(start_serve, config, tmp_path / "serve.log")
    try:
        status, health, _ = await readiness(worker.url)
        assert status == 200, health

        silent.speaking.clear()
        status, health, seconds = await readiness(worker.url)
        assert status == 503, health
        problems = health["problems"]
        assert isinstance(problems, list)
        assert any(problem.startswith("session store") for problem in problems), health
        assert any(problem.startswith("memory store") for problem in problems), health
        assert seconds < 8, f"/readyz took {seconds:.1f}s"
    finally:
        silent.speaking.set()
        # (in a thread: the relay runs on this event loop, and the worker's last queries go through it)
        await asyncio.to_thread(worker.terminate)
