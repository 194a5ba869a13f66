"""aiohttp imported with its CA certificates held back still verifies https peers as before."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")

#: Runs in a fresh interpreter (aiohttp not yet imported): an https server in a thread with the
#: certificate given, then one GET through aiohttp's default context; prints what happened.
_CLIENT = """
import asyncio, http.server, ssl, sys, threading
from duragent.lazy_certificates import import_aiohttp

import_aiohttp()
import aiohttp, aiohttp.connector

default = aiohttp.connector._SSL_CONTEXT_VERIFIED
print("loaded at import:", ssl.SSLContext.cert_store_stats(default)["x509_ca"] > 0)

server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
server_side.load_cert_chain(sys.argv[1], sys.argv[2])
httpd = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
httpd.socket = server_side.wrap_socket(httpd.socket, server_side=True)
threading.Thread(target=httpd.serve_forever, daemon=True).start()

async def fetch():
    async with aiohttp.ClientSession() as http:
        async with http.get(f"https://127.0.0.1:{httpd.server_port}/") as response:
            return response.status

try:
    print("status:", asyncio.run(fetch()))
except aiohttp.ClientConnectorCertificateError:
    print("status: certificate refused")
"""


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def certificates(tmp_path: Path) -> Path:
    """A CA (ca.pem) and a certificate it signed for 127.0.0.1 (server.pem, server.key)."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test CA",
             "-keyout", "ca.key", "-out", "ca.pem", cwd=tmp_path)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
             "-keyout", "server.key", "-out", "server.csr", cwd=tmp_path)  # fmt: skip
    (tmp_path / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-extfile", "san.ext", "-out", "server.pem", cwd=tmp_path)  # fmt: skip
    return tmp_path


def _fetch(certificates: Path, trusted_bundle: Path) -> str:
    env = {**os.environ, "SSL_CERT_FILE": str(trusted_bundle), "SSL_CERT_DIR": str(certificates / "none")}
    args = [str(certificates / "server.pem"), str(certificates / "server.key")]
    done = subprocess.run(
        [sys.executable, "-c", _CLIENT, *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_system_certificates_are_read_when_a_connection_needs_them(certificates: Path) -> None:
    output = _fetch(certificates, trusted_bundle=certificates / "ca.pem")

    assert "loaded at import: False" in output
    assert "status: 200" in output


def test_a_peer_the_system_does_not_trust_is_still_refused(certificates: Path) -> None:
    output = _fetch(certificates, trusted_bundle=certificates / "server.pem")  # not a CA

    assert "status: certificate refused" in output
