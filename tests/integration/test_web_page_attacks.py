"""A web page cannot drive the local server: foreign Host (DNS rebinding), cross-site Origin,
`text/plain` bodies, and requests without the workspace's tokens are refused before any route runs.

The server is the real app on 127.0.0.1; requests are sent the way a browser would send them.
"""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

import aiohttp
import pytest

from duragent.access_tokens import ensure_tokens, read_tokens, tokens_path
from duragent.config import load_config
from duragent.scaffold import ProviderChoice, init_workspace
from duragent.server.request_guard import HostPolicy, split_host
from tests.e2e.server_harness import Api, ApiFactory

EVERY_KIND_OF_ROUTE = [
    ("GET", "/livez"),
    ("GET", "/readyz"),
    ("GET", "/openapi.json"),
    ("GET", "/api/v1/agents"),
    ("POST", "/api/v1/sessions"),
    ("GET", "/api/v1/sessions/s_x/events"),
    ("POST", "/api/admin/v1/agents"),
    ("POST", "/api/admin/v1/shutdown"),
    ("GET", "/nowhere"),
]


async def still_serving(api: Api) -> bool:
    status, _ = await api.call("GET", "/api/v1/agents")
    return status == 200


@pytest.mark.parametrize(("method", "path"), EVERY_KIND_OF_ROUTE)
async def test_a_foreign_host_is_refused_on_every_route(
    start_api: ApiFactory, method: str, path: str
) -> None:
    api = await start_api(git=False)
    # DNS rebinding: the page's own name resolves to 127.0.0.1, so the browser sends that name.
    for host in (
        "evil.example",
        f"evil.example:{api.server.port}",
        "localhost.evil.example",
        "127.0.0.1.nip.io",
    ):
        async with api.http.request(method, api.url(path), headers={"Host": host}, json={}) as response:
            assert response.status == 421, (host, await response.text())
            assert response.content_type == "application/problem+json"
            assert "server.allowed_hosts" in (await response.json())["detail"]
    assert await still_serving(api)


async def test_loopback_names_and_addresses_are_this_server(start_api: ApiFactory) -> None:
    api = await start_api(git=False)
    port = api.server.port
    for host in (
        "127.0.0.1",
        f"127.0.0.1:{port}",
        "localhost",
        f"localhost:{port}",
        "[::1]",
        f"[::1]:{port}",
    ):
        async with api.http.get(api.url("/api/v1/agents"), headers={"Host": host}) as response:
            assert response.status == 200, host


async def test_names_in_allowed_hosts_are_served(start_api: ApiFactory) -> None:
    api = await start_api(git=False, server_extra="  allowed_hosts: [agents.home.arpa]")
    async with api.http.get(api.url("/api/v1/agents"), headers={"Host": "agents.home.arpa:8080"}) as response:
        assert response.status == 200
    async with api.http.get(api.url("/api/v1/agents"), headers={"Host": "other.home.arpa"}) as response:
        assert response.status == 421


async def test_a_cross_site_origin_cannot_shut_the_server_down(start_api: ApiFactory) -> None:
    api = await start_api(git=False)
    headers = {"Origin": "https://evil.example"}
    async with api.http.post(api.url("/api/admin/v1/shutdown"), headers=headers) as response:
        assert response.status == 403
        assert "server.allowed_origins" in (await response.json())["detail"]
        assert "Access-Control-Allow-Origin" not in response.headers
    for origin in ("null", f"http://localhost:{api.server.port + 1}"):
        async with api.http.get(api.url("/api/v1/agents"), headers={"Origin": origin}) as response:
            assert response.status == 403, origin
    assert await still_serving(api)


async def test_the_servers_own_origin_is_served_without_cors_headers(start_api: ApiFactory) -> None:
    api = await start_api(git=False)
    own = f"http://127.0.0.1:{api.server.port}"
    async with api.http.get(api.url("/api/v1/agents"), headers={"Origin": own}) as response:
        assert response.status == 200
        assert "Access-Control-Allow-Origin" not in response.headers


async def test_listed_origins_get_cors_headers_and_preflight(start_api: ApiFactory) -> None:
    api = await start_api(git=False, server_extra="  allowed_origins: ['https://ui.example']")
    origin = {"Origin": "https://ui.example"}
    async with api.http.options(
        api.url("/api/v1/sessions"), headers={**origin, "Access-Control-Request-Method": "POST"}
    ) as response:
        assert response.status == 204
        assert response.headers["Access-Control-Allow-Origin"] == "https://ui.example"
        assert "Authorization" in response.headers["Access-Control-Allow-Headers"]
    async with api.http.get(api.url("/api/v1/agents"), headers=origin) as response:
        assert response.status == 200
        assert response.headers["Access-Control-Allow-Origin"] == "https://ui.example"


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
async def test_a_body_that_is_not_declared_json_is_415(start_api: ApiFactory, content_type: str) -> None:
    api = await start_api(git=False)
    body = json.dumps({"agent": "helper"}).encode()
    async with api.http.post(
        api.url("/api/v1/sessions"), data=body, headers={"Content-Type": content_type}
    ) as response:
        assert response.status == 415
        assert response.content_type == "application/problem+json"
    sessions = await api.call("GET", "/api/v1/sessions")
    assert sessions[1]["sessions"] == []


async def test_without_tokens_nothing_but_health_answers(start_api: ApiFactory) -> None:
    api = await start_api(git=False)
    async with api.anonymous() as http:
        async with http.get(api.url("/api/v1/agents")) as response:
            assert response.status == 401
        async with http.post(api.url("/api/v1/sessions"), json={"agent": "helper"}) as response:
            assert response.status == 401
        async with http.post(api.url("/api/admin/v1/shutdown")) as response:
            assert response.status == 403
        async with http.get(api.url("/livez")) as response:
            assert response.status == 200
    assert await still_serving(api)


async def test_tokens_in_duragent_yaml_win_over_the_workspace_file(
    start_api: ApiFactory, tmp_path: Path
) -> None:
    api = await start_api(git=False, api_token="api-from-yaml", admin_token="admin-from-yaml")
    config = load_config(tmp_path / "ws0" / "duragent.yaml")
    stored = ensure_tokens(config.data_path)
    async with api.anonymous() as http:
        async with http.get(
            api.url("/api/v1/agents"), headers={"Authorization": f"Bearer {stored.api}"}
        ) as response:
            assert response.status == 401
        async with http.get(
            api.url("/api/v1/agents"), headers={"Authorization": "Bearer api-from-yaml"}
        ) as response:
            assert response.status == 200


async def test_the_first_start_makes_a_private_ignored_tokens_file(
    start_api: ApiFactory, tmp_path: Path
) -> None:
    await start_api(git=True)
    data = tmp_path / "ws0" / "data"
    path = tokens_path(data)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_tokens(data) is not None
    ignored = subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=data, check=False)  # noqa: ASYNC221
    assert ignored.returncode == 0


def test_init_makes_the_tokens_and_never_commits_them(tmp_path: Path) -> None:
    init_workspace(tmp_path, provider=ProviderChoice("demo", "demo", "tests"))
    data = tmp_path / ".duragent"
    tokens = read_tokens(data)
    assert tokens is not None
    assert tokens.api != tokens.admin
    assert len(tokens.api) >= 32
    assert stat.S_IMODE(tokens_path(data).stat().st_mode) == 0o600
    history = subprocess.run(
        ["git", "log", "-p", "--all"], cwd=data, capture_output=True, text=True, check=True
    )
    files = subprocess.run(
        ["git", "log", "--all", "--name-only", "--format="],
        cwd=data,
        capture_output=True,
        text=True,
        check=True,
    )
    assert tokens.api not in history.stdout
    assert tokens.admin not in history.stdout
    assert [name for name in files.stdout.split() if name.startswith("run/")] == []


def test_servers_starting_together_agree_on_one_set_of_tokens(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        made = list(pool.map(lambda _: ensure_tokens(tmp_path), range(16)))
    assert len(set(made)) == 1
    assert [p.name for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize(
    ("bind", "host", "served"),
    [
        ("127.0.0.1", "127.0.0.1", True),
        ("127.0.0.1", "127.0.0.5", True),
        ("127.0.0.1", "::1", True),
        ("127.0.0.1", "localhost", True),
        ("127.0.0.1", "10.0.0.7", False),
        ("127.0.0.1", "evil.example", False),
        ("10.0.0.7", "10.0.0.7", True),
        ("10.0.0.7", "10.0.0.8", False),
        ("0.0.0.0", "192.168.1.20", True),
        ("0.0.0.0", "my-laptop.local", False),
        ("::", "fe80::1", True),
    ],
)
def test_which_hosts_a_bound_server_answers_to(bind: str, host: str, served: bool) -> None:
    assert HostPolicy(bind).host_allowed(host) is served


def test_a_star_in_allowed_hosts_accepts_any_name_behind_a_proxy() -> None:
    assert HostPolicy("0.0.0.0", ["*"]).host_allowed("agents.example.com")


@pytest.mark.parametrize("header", ["", "a b", "user@evil.example", "evil.example/path", "[::1"])
def test_malformed_host_headers_are_not_hosts(header: str) -> None:
    assert split_host(header) is None


async def test_a_client_of_the_workspace_sends_its_tokens(start_api: ApiFactory, tmp_path: Path) -> None:
    from duragent.client.http import ApiClient, api_token

    api = await start_api(git=False)
    config = load_config(tmp_path / "ws0" / "duragent.yaml")
    async with ApiClient(api.url("").rstrip("/"), token=api_token(config)) as client:
        assert {agent["name"] for agent in await client.agents()} == {"helper", "pauser"}


async def test_a_raw_http_client_needs_the_tokens(start_api: ApiFactory) -> None:
    api = await start_api(git=False)
    async with aiohttp.ClientSession() as http, http.get(api.url("/api/v1/agents")) as response:
        assert response.status == 401
        assert "run/tokens.json" in (await response.json())["detail"]
