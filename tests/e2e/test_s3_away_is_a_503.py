"""An S3 server going away under a running worker answers artifact requests with a 503 worth
retrying, naming S3, not a 500 that reads as the server's own bug; once S3 is back they work."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
from moto.server import ThreadedMotoServer

from duragent.testing.fake_llm import FakeLLMServer
from duragent.testing.s3 import MotoS3Server
from tests.e2e.server_harness import start_serve, write_workspace
from tests.e2e.test_worker_start_errors_name_their_key import S3_ENV, with_artifacts_in

BUCKET = "review-artifacts"


async def test_listing_and_reading_artifacts_while_s3_is_away_is_a_503_then_works_again(
    tmp_path: Path, fake_llm: FakeLLMServer
) -> None:
    moto = MotoS3Server().start()
    port = urlsplit(moto.endpoint_url).port
    moto.create_bucket(BUCKET)
    config = write_workspace(tmp_path, fake_llm.url, git=False, api_token="t0ken")
    with_artifacts_in(config, moto, BUCKET)
    worker = await asyncio.to_thread(start_serve, config, tmp_path / "serve.log", env=S3_ENV)
    back: ThreadedMotoServer | None = None
    try:
        async with aiohttp.ClientSession(headers={"Authorization": "Bearer t0ken"}) as http:
            async with http.post(f"{worker.url}/api/v1/sessions", json={"agent": "helper"}) as made:
                session_id = (await made.json())["session_id"]
            artifacts = f"{worker.url}/api/v1/sessions/{session_id}/artifacts"

            moto.stop()
            for url in (artifacts, f"{artifacts}/reports/weekly.md"):
                async with http.get(url) as away:
                    problem = await away.json(content_type=None)
                assert away.status == 503, problem
                assert away.content_type == "application/problem+json"
                assert problem["type"] == "urn:duragent:problem:service-unavailable"
                assert "S3 request" in problem["detail"]
                assert "services.artifacts.endpoint_url" in problem["detail"]

            # The same endpoint again (moto keeps its buckets in memory: made anew).
            back = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
            back.start()
            moto.client().create_bucket(Bucket=BUCKET)
            async with http.get(artifacts) as again:
                listed = await again.json()
            assert again.status == 200, listed
            assert listed["artifacts"] == []
    finally:
        worker.terminate()
        if back is not None:
            back.stop()
