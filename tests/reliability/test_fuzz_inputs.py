"""Fuzzing what crosses the process boundary: HTTP request bodies and gateway protocol lines.

Only clear errors, never a traceback or a hang: a real `duragent serve` answers every random body
with 2xx or a 4xx problem (never 5xx, never silence), and a protocol line of random bytes or JSON
is an event, an unknown event or a ProtocolError. Each case is time-boxed.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from duragent.gateways.protocol import ProtocolError, parse_command, parse_event
from duragent.testing.fake_llm import start_process
from tests.e2e.server_harness import ServeProcess, start_serve, write_workspace

FUZZ = settings(
    max_examples=60,
    deadline=20_000,  # one case: 20 s at most (ms in practice), even on a loaded machine
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)
REQUEST_TIMEOUT = 20

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
#: Field names the bodies really have, so random values reach the validators behind them.
FIELDS = st.sampled_from(
    [
        "agent",
        "content",
        "metadata",
        "on_disconnect",
        "agent_spec",
        "prompts",
        "call_id",
        "decision",
        "name",
        "files",
        "model",
        "messages",
        "stream",
        "timing",
        "payload",
        "schedule",
        "at",
        "every",
    ]
)
BODIES = st.one_of(
    st.dictionaries(FIELDS, JSON_VALUES, max_size=5).map(json.dumps),
    JSON_VALUES.map(json.dumps),
    st.binary(max_size=200).map(lambda raw: raw.decode("latin-1")),
    st.text(max_size=200),
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServeProcess, str]]:
    """A real server (fake model in its own process, replying by echo) and one session of it."""
    root = tmp_path_factory.mktemp("fuzz-http")
    script = root / "script.json"
    script.write_text("[]")
    model, model_url = start_process(script)
    try:
        config = write_workspace(root, model_url, git=False)
        serve = start_serve(config, root / "serve.log")
        try:
            status, created = call(serve, "POST", "/api/v1/sessions", json.dumps({"agent": "helper"}))
            assert status == 201, created
            yield serve, created["session_id"]
        finally:
            serve.terminate()
    finally:
        model.terminate()
        model.wait(10)


def call(server: ServeProcess, method: str, path: str, body: str) -> tuple[int, Any]:
    request = urllib.request.Request(
        server.url + path,
        data=body.encode("utf-8", "surrogatepass"),
        headers={**server.headers, "Content-Type": "application/json"},
        method=method,
    )
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        kind = error.headers.get_content_type()
        return error.code, json.load(error) if kind in (
            "application/problem+json",
            "application/json",
        ) else {}


ROUTES = [
    ("POST", "/api/v1/sessions"),
    ("POST", "/api/v1/sessions/{session}/messages"),
    ("POST", "/api/v1/sessions/{session}/approve"),
    ("POST", "/api/v1/schedules"),
    ("POST", "/api/admin/v1/agents"),
    ("PUT", "/api/admin/v1/agents/fuzzed"),
    ("POST", "/v1/chat/completions"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("method", "route"), ROUTES)
@FUZZ
@given(body=BODIES)
def test_random_request_bodies_get_a_reply_or_a_clear_4xx(
    server: tuple[ServeProcess, str], method: str, route: str, body: str
) -> None:
    serve, session_id = server
    status, reply = call(serve, method, route.format(session=session_id), body)
    assert status < 500, (status, reply)
    if status >= 400:
        assert reply, f"{status} without a problem+json body"
        message = reply.get("detail") or reply.get("error", {}).get("message")
        assert message, reply
        assert "Traceback" not in json.dumps(reply)


LINE_FIELDS = st.sampled_from(
    [
        "type",
        "chat_id",
        "message_id",
        "text",
        "content",
        "request_id",
        "gateway",
        "version",
        "capabilities",
        "sender",
        "routing",
        "media",
        "callback_id",
        "data",
        "error",
        "fatal",
        "reason",
        "config",
    ]
)
EVENT_TYPES = st.sampled_from(
    [
        "ready",
        "message_received",
        "callback_query",
        "command_ok",
        "command_error",
        "pong",
        "error",
        "shutdown",
        "auth_required",
        "auth_success",
        "send_message",
        "configure",
        "ping",
        "nonsense",
    ]
)
LINES = st.one_of(
    st.builds(
        lambda kind, rest: json.dumps({"type": kind, **rest}),
        EVENT_TYPES,
        st.dictionaries(LINE_FIELDS, JSON_VALUES, max_size=6),
    ).map(str.encode),
    JSON_VALUES.map(lambda value: json.dumps(value).encode()),
    st.binary(max_size=300),
    st.integers(1, 200_000).map(
        lambda depth: b'{"type": "ready", "x": ' + b"[" * depth + b"]" * depth + b"}"
    ),
)


@settings(max_examples=400, deadline=5_000, derandomize=True)
@given(line=LINES)
def test_random_protocol_lines_are_an_event_or_a_protocol_error(line: bytes) -> None:
    for parse in (parse_event, parse_command):
        message = "parsed"
        try:
            parse(line)
        except ProtocolError as error:
            message = str(error)
        assert message.strip()
