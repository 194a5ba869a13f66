"""A real S3-compatible server for tests: moto's standalone server on a free 127.0.0.1 port.

It speaks the S3 REST API over HTTP, so the store under test uses its real client, signing and
streaming; nothing is patched. Use it as a context manager, or through the `moto_s3` fixture:

    from duragent.testing.s3 import moto_s3  # noqa: F401  (makes the fixture available)

    async def test_upload(moto_s3):
        store = S3ArtifactStore(moto_s3.create_bucket(), **moto_s3.client_options())

Needs `moto[server]` (a test dependency). moto keeps its data in the process's memory, so
every server in one process shares it: give each test its own bucket (`create_bucket()` does).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import pytest

#: The credentials moto accepts (any are accepted; these are only what the client signs with).
ACCESS_KEY_ID = "testing"
SECRET_ACCESS_KEY = "testing"
REGION = "us-east-1"


class MotoS3Server:
    """moto's ThreadedMotoServer bound to 127.0.0.1 on a port the OS picks."""

    def __init__(self) -> None:
        self._server: Any = None
        self._client: Any = None
        self.endpoint_url = ""

    def start(self) -> MotoS3Server:
        """Start serving; returns self with `endpoint_url` set."""
        from moto.server import ThreadedMotoServer

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        self._server = server
        self.endpoint_url = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        """Stop the server thread."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> MotoS3Server:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for S3ArtifactStore (or an S3 client) pointing at this server."""
        return {
            "endpoint_url": self.endpoint_url,
            "region": REGION,
            "access_key_id": ACCESS_KEY_ID,
            "secret_access_key": SECRET_ACCESS_KEY,
        }

    def create_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a fresh random name by default) and return its name."""
        bucket = name or f"duragent-test-{secrets.token_hex(6)}"
        self.client().create_bucket(Bucket=bucket)
        return bucket

    def client(self) -> Any:
        """A blocking boto3 S3 client of this server (made once), for test setup and inspection."""
        if self._client is None:
            import boto3  # type: ignore[import-untyped]  # moto's dependency, no stubs

            self._client = boto3.client(
                "s3",
                endpoint_url=self.endpoint_url,
                region_name=REGION,
                aws_access_key_id=ACCESS_KEY_ID,
                aws_secret_access_key=SECRET_ACCESS_KEY,
            )
        return self._client


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3Server]:
    """One moto S3 server for the test session; make a bucket per test with `create_bucket()`."""
    with MotoS3Server() as server:
        yield server
