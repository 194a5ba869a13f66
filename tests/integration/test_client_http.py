"""The API client and launcher against a real in-process server and the fake model.

What a terminal user meets: replies streamed with positions, replay after a position without
duplicates, and one-line errors that say how to fix them (token, unknown agent, no server,
ended session, a server of another workspace).
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer

from duragent.client.asyncio_client import AsyncioApiClient
from duragent.client.http import (
    AgentNotFound,
    ApiClient,
    ApiError,
    ServerUnreachable,
    SessionGone,
    Unauthorized,
    api_token,
)
from duragent.client.launcher import NoServer, WrongWorkspace, connect, workspace_of
from duragent.client.runfile import read_run_info, write_run_info
from duragent.client.state import ClientState
from duragent.config import DuragentConfig, load_config
from duragent.server.app import create_app
from duragent.testing.fake_llm import FakeLLMServer, text
from tests.e2e.server_harness import start_test_server

AGENT = """\
apiVersion: duragent/v1alpha1
kind: Agent
metadata:
  name: {name}
spec:
  model:
    provider: openai
    name: fake-model
    base_url: {base_url}
  system_prompt: You help.
"""


def make_workspace(root: Path, base_url: str, *, token: str | None = None) -> DuragentConfig:
    for name in ("helper", "writer"):
        folder = root / ".duragent" / "agents" / name
        folder.mkdir(parents=True)
        (folder / "agent.yaml").write_text(AGENT.format(name=name, base_url=base_url))
    server = f"server:\n  api_token: {token}\n" if token else ""
    (root / "duragent.yaml").write_text(f"data_dir: ./.duragent\ngit:\n  enabled: false\n{server}")
    return load_config(root / "duragent.yaml")


@pytest_asyncio.fixture
async def fake_model() -> AsyncIterator[FakeLLMServer]:
    async with FakeLLMServer() as server:
        yield server


@pytest.fixture(params=[ApiClient, AsyncioApiClient], ids=["aiohttp", "asyncio"])
def client_type(request: pytest.FixtureRequest) -> type[ApiClient]:
    """Each transport the CLI talks through: aiohttp, and asyncio's streams (a warm `chat`)."""
    return request.param


@pytest.fixture
def env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")


async def serve(config: DuragentConfig) -> TestServer:
    return await start_test_server(TestServer(create_app(config), host="127.0.0.1"))


def url_of(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


async def test_a_streamed_reply_arrives_as_tokens_then_done_with_positions(
    tmp_path: Path, fake_model: FakeLLMServer, env_key: None, client_type: type[ApiClient]
) -> None:
    config = make_workspace(tmp_path, fake_model.url)
    fake_model.enqueue(text("one two three", chunks=3))
    server = await serve(config)
    try:
        async with client_type(url_of(server), token=api_token(config)) as api:
            session = await api.create_session("helper")
            events = [e async for e in api.stream(session["session_id"], "count")]
    finally:
        await server.close()
    tokens = [e.data["content"] for e in events if e.event == "token"]
    assert "".join(tokens) == "one two three"
    assert events[-1].event == "done"
    assert events[-1].data["content"] == "one two three"
    assert all(e.id for e in events)


async def test_a_server_on_an_ipv6_address_is_reached(
    tmp_path: Path, fake_model: FakeLLMServer, env_key: None, client_type: type[ApiClient]
) -> None:
    config = make_workspace(tmp_path, fake_model.url)
    server = await start_test_server(TestServer(create_app(config), host="::1"))
    try:
        async with client_type(url_of(server), token=api_token(config)) as api:
            session = await api.create_session("helper")
    finally:
        await server.close()
    assert session["agent"] == "helper"


async def test_events_after_a_position_replay_exactly_what_came_later(
    tmp_path: Path, fake_model: FakeLLMServer, env_key: None, client_type: type[ApiClient]
) -> None:
    config = make_workspace(tmp_path, fake_model.url)
    fake_model.enqueue(text("first"), text("second"))
    server = await serve(config)
    try:
        async with client_type(url_of(server), token=api_token(config)) as api:
            session_id = (await api.create_session("helper"))["session_id"]
            first = [e async for e in api.stream(session_id, "one")]
            seen = first[-1].id
            await api.send(session_id, "two")
            replayed = []
            async for event in api.events(session_id, after=seen):
                replayed.append(event)
                if event.event == "done":
                    break
    finally:
        await server.close()
    assert [e.event for e in replayed if e.event != "token"] == ["start", "done"]
    assert replayed[0].data["content"] == "two"
    assert "".join(e.data["content"] for e in replayed if e.event == "token") == "second"
    assert replayed[-1].data["content"] == "second"
    assert len({e.id for e in replayed}) == len(replayed)


async def test_a_wrong_token_says_which_token_to_set(
    tmp_path: Path, fake_model: FakeLLMServer, client_type: type[ApiClient]
) -> None:
    config = make_workspace(tmp_path, fake_model.url, token="right-token")
    server = await serve(config)
    try:
        async with client_type(url_of(server), token="wrong-token") as api:
            with pytest.raises(Unauthorized) as caught:
                await api.agents()
        async with client_type(url_of(server), token="right-token") as api:
            assert {a["name"] for a in await api.agents()} == {"helper", "writer"}
    finally:
        await server.close()
    assert "401" in str(caught.value)
    assert "DURAGENT_API_TOKEN" in str(caught.value)
    assert "server.api_token" in str(caught.value)


async def test_an_unknown_agent_lists_the_known_ones(
    tmp_path: Path, fake_model: FakeLLMServer, client_type: type[ApiClient]
) -> None:
    config = make_workspace(tmp_path, fake_model.url)
    server = await serve(config)
    try:
        async with client_type(url_of(server), token=api_token(config)) as api:
            with pytest.raises(AgentNotFound) as caught:
                await api.create_session("nobody")
    finally:
        await server.close()
    assert str(caught.value) == "unknown agent 'nobody'; known agents: helper, writer"


async def test_no_server_says_how_to_start_one(client_type: type[ApiClient]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with client_type(f"http://127.0.0.1:{port}") as api:
        with pytest.raises(ServerUnreachable) as caught:
            await api.agents()
    assert f"http://127.0.0.1:{port}" in str(caught.value)
    assert "duragent serve" in str(caught.value)


async def test_the_fast_paths_client_knows_whether_a_message_went_out(
    tmp_path: Path, fake_model: FakeLLMServer, env_key: None
) -> None:
    """A warm `send` hands over to the full command only if no message reached a server."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    gone = AsyncioApiClient(f"http://127.0.0.1:{port}")
    with pytest.raises(ServerUnreachable):
        [e async for e in gone.stream("s_01", "hello")]
    assert not gone.message_sent

    config = make_workspace(tmp_path, fake_model.url)
    fake_model.enqueue(text("hi"))
    server = await serve(config)
    try:
        api = AsyncioApiClient(url_of(server), token=api_token(config))
        session_id = (await api.create_session("helper"))["session_id"]
        assert not api.message_sent
        events = [e async for e in api.stream(session_id, "hello")]
    finally:
        await server.close()
    assert events[-1].event == "done"
    assert api.message_sent


async def test_an_ended_session_refuses_messages_with_the_way_out(
    tmp_path: Path, fake_model: FakeLLMServer, env_key: None, client_type: type[ApiClient]
) -> None:
    config = make_workspace(tmp_path, fake_model.url)
    server = await serve(config)
    try:
        async with client_type(url_of(server), token=api_token(config)) as api:
            session_id = (await api.create_session("helper"))["session_id"]
            await api.end_session(session_id)
            assert (await api.session(session_id))["status"] == "ended"
            with pytest.raises(SessionGone) as caught:
                await api.send(session_id, "hello?")
    finally:
        await server.close()
    assert "has ended" in str(caught.value)
    assert "duragent chat --new" in str(caught.value)


async def attached_clients_become(api: ApiClient, session_id: str, count: int) -> None:
    """Poll the session until the server counts `count` attached clients."""
    deadline = asyncio.get_running_loop().time() + 15
    while True:
        attached = (await api.session(session_id)).get("attached")
        if attached == count:
            return
        assert asyncio.get_running_loop().time() < deadline, f"{attached} clients attached, not {count}"
        await asyncio.sleep(0.01)


async def test_closing_the_event_stream_detaches_at_once(
    tmp_path: Path, fake_model: FakeLLMServer, client_type: type[ApiClient]
) -> None:
    config = make_workspace(tmp_path, fake_model.url)
    server = await serve(config)
    try:
        async with client_type(url_of(server), token=api_token(config)) as api:
            session_id = (await api.create_session("helper"))["session_id"]

            async def follow() -> None:
                async for _event in api.events(session_id):
                    pass

            following = asyncio.get_running_loop().create_task(follow())
            await attached_clients_become(api, session_id, 1)
            following.cancel()
            with pytest.raises(asyncio.CancelledError):
                await following
            await attached_clients_become(api, session_id, 0)
    finally:
        await server.close()


async def test_the_launcher_reuses_the_server_named_in_the_run_file(
    tmp_path: Path, fake_model: FakeLLMServer
) -> None:
    config = make_workspace(tmp_path, fake_model.url)
    server = await serve(config)
    try:
        write_run_info(
            config.data_path,
            {"pid": os.getpid(), "url": url_of(server), "workspace_hash": config.workspace_hash},
        )
        connection = await asyncio.to_thread(connect, workspace_of(config))
        assert connection.url == url_of(server)
        assert not connection.started
    finally:
        await server.close()


def test_the_launcher_refuses_a_run_file_of_another_workspace(tmp_path: Path) -> None:
    other = make_workspace(tmp_path / "other", "http://127.0.0.1:9/v1")
    mine = make_workspace(tmp_path / "mine", "http://127.0.0.1:9/v1")
    write_run_info(
        mine.data_path,
        {"pid": os.getpid(), "url": "http://127.0.0.1:9", "workspace_hash": other.workspace_hash},
    )
    with pytest.raises(WrongWorkspace, match="another workspace"):
        connect(workspace_of(mine), start=False)


def test_a_run_file_of_a_dead_process_is_ignored(tmp_path: Path) -> None:
    config = make_workspace(tmp_path, "http://127.0.0.1:9/v1")
    write_run_info(config.data_path, {"pid": 2**22 + 12345, "url": "http://127.0.0.1:9"})
    assert read_run_info(config.data_path) is None
    with pytest.raises(NoServer, match="no server is running"):
        connect(workspace_of(config), start=False)


def test_a_terminal_remembers_its_session_and_never_moves_its_position_back(tmp_path: Path) -> None:
    state = ClientState.load(tmp_path, "term")
    state.attached("helper", "s_1")
    state.saw("s_1", "12.3")
    state.saw("s_1", "12")
    state.save()
    again = ClientState.load(tmp_path, "term")
    assert again.last_session == {"helper": "s_1"}
    assert again.seen == {"s_1": "12.3"}
    assert again.unseen("s_1", 20) == 8
    assert (tmp_path / "clients" / "term.json").exists()


async def test_a_server_that_dies_mid_answer_is_reported_as_gone_not_as_a_crash(
    client_type: type[ApiClient],
) -> None:
    """A server killed while it streams (chunked body cut off) is a lost server to its client,
    which reconnects or says so, not a traceback or a parser's words."""

    async def answer_then_die(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        event = b'id: 1\nevent: token\ndata: {"content": "half a rep"}\n\n'
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"%x\r\n%s\r\n" % (len(event), event)
        )
        await writer.drain()
        writer.close()  # (no last chunk: the process died)

    dying = await asyncio.start_server(answer_then_die, "127.0.0.1", 0)
    port = dying.sockets[0].getsockname()[1]
    try:
        seen: list[str] = []

        async def follow(api: ApiClient) -> None:
            async for event in api.events("s_01"):
                seen.append(str(event.data.get("content")))

        async with client_type(f"http://127.0.0.1:{port}") as api:
            with pytest.raises(ServerUnreachable) as caught:
                await follow(api)
    finally:
        dying.close()
        await dying.wait_closed()
    assert seen == ["half a rep"]
    assert "closed the connection" in str(caught.value)


async def test_a_server_that_is_not_duragent_is_named_as_such_not_pasted(
    client_type: type[ApiClient],
) -> None:
    """`--server` aimed at another program (a web server's HTML 404 page): one line saying the URL
    does not answer as a Duragent server, not the page's HTML on the terminal."""
    page = b"<!DOCTYPE HTML>\n<html><body><h1>Error response</h1><p>File not found.</p></body></html>\n"

    async def web_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        writer.write(
            b"HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n%s" % (len(page), page)
        )
        await writer.drain()
        writer.close()

    other = await asyncio.start_server(web_server, "127.0.0.1", 0)
    port = other.sockets[0].getsockname()[1]
    try:
        async with client_type(f"http://127.0.0.1:{port}") as api:
            with pytest.raises(ApiError) as caught:
                await api.agents()
    finally:
        other.close()
        await other.wait_closed()
    message = str(caught.value)
    assert "<html" not in message.lower()
    assert "\n" not in message
    assert f"http://127.0.0.1:{port}" in message
    assert "not a Duragent server" in message
    assert "404" in message
