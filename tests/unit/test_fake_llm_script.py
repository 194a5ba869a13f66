"""Scripting the fake LLM server: builders, script files, the command line, non-streaming replies."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import aiohttp
import pytest

from duragent.errors import ConfigError
from duragent.llm.openai_compat import OpenAICompatProvider
from duragent.llm.types import LLMRequest, Message
from duragent.testing.fake_llm import (
    FakeLLMServer,
    ScriptedCall,
    echo,
    error,
    load_script,
    parse_script,
    read_recorded,
    text,
    tool_calls,
)

pytest_plugins = ["duragent.testing.pytest_plugin"]

HELLO = LLMRequest("m", (Message("user", "hello"),))


def test_a_yaml_script_lists_responses_in_order(tmp_path: Path) -> None:
    script_file = tmp_path / "replies.yaml"
    script_file.write_text(
        "- text: Hello there\n"
        "  chunks: 3\n"
        "- tool_calls:\n"
        "    - name: memory\n"
        "      arguments: {action: remember, section: fact, content: tea}\n"
        "- error: 429\n"
        "  body: slow down\n"
        "  retry_after: 2\n"
        "- broken_stream: 1\n"
        "- malformed: true\n"
        "- text: late\n"
        "  delay: 0.5\n"
    )
    script = load_script(script_file)
    assert script.responses[0] == text("Hello there", 3)
    assert script.responses[1] == tool_calls(
        [ScriptedCall("memory", {"action": "remember", "section": "fact", "content": "tea"})]
    )
    assert script.responses[2] == error(429, "slow down", retry_after="2")
    assert [r.kind for r in script.responses[3:5]] == ["broken_stream", "malformed"]
    assert script.responses[5].delay == 0.5
    assert script.default == echo()


def test_a_script_streams_arguments_that_are_not_json_and_breaks_off_after_its_chunks() -> None:
    script = parse_script(
        [
            {"tool_calls": [{"name": "bash", "raw_arguments": '{"command": '}]},
            {"broken_stream": 3, "text": "one two three four five six", "chunks": 6},
        ]
    )
    assert script.responses[0] == tool_calls([ScriptedCall("bash", {}, raw_arguments='{"command": ')])
    assert (script.responses[1].chunks, script.responses[1].after_chunks) == (6, 3)


def test_a_json_script_can_set_the_default_reply() -> None:
    script = parse_script(json.loads('{"responses": [], "default": {"text": "always this"}}'))
    assert script.default == text("always this")


@pytest.mark.parametrize(
    ("data", "complaint"),
    [
        ({"responses": [{"txt": "typo"}]}, "response 1: needs one of"),
        ([{"text": "hi", "chunkz": 2}], "response 1: unknown keys chunkz"),
        ([{"tool_calls": [{"name": "bash", "args": {}}]}], r"response 1: tool_calls\[0\]: unknown keys args"),
        ([{"tool_calls": ["bash"]}], r"response 1: tool_calls\[0\] must be a mapping with a name"),
        ([{"error": "not a status"}], "response 1: invalid literal"),
        ("just a string", "a script is a list of responses"),
    ],
)
def test_a_bad_script_is_refused_with_the_reason(data: object, complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint):
        parse_script(data, "replies.yaml")


async def test_fixture_server_echoes_when_nothing_is_scripted(fake_llm: FakeLLMServer) -> None:
    async with OpenAICompatProvider(fake_llm.url, None) as provider:
        assert (await provider.complete(HELLO)).text == "echo: hello"
    assert fake_llm.pending == 0
    assert fake_llm.requests[0].api == "openai"


async def test_non_streaming_requests_get_a_whole_completion_in_each_format() -> None:
    async with (
        FakeLLMServer(default=tool_calls([("memory", {"action": "recall"})], text="Looking.")) as server,
        aiohttp.ClientSession() as http,
    ):
        openai_body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        async with http.post(f"{server.url}/chat/completions", json=openai_body) as response:
            openai_reply = await response.json()
        anthropic_body = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
        async with http.post(f"{server.url}/messages", json=anthropic_body) as response:
            anthropic_reply = await response.json()
    message = openai_reply["choices"][0]["message"]
    assert message["content"] == "Looking."
    assert json.loads(message["tool_calls"][0]["function"]["arguments"]) == {"action": "recall"}
    assert openai_reply["choices"][0]["finish_reason"] == "tool_calls"
    assert [block["type"] for block in anthropic_reply["content"]] == ["text", "tool_use"]
    assert anthropic_reply["content"][1]["input"] == {"action": "recall"}
    assert anthropic_reply["stop_reason"] == "tool_use"


async def test_a_fake_that_keeps_no_requests_still_records_each_body_for_replay(tmp_path: Path) -> None:
    """A benchmark's fake answers thousands of growing requests: holding every parsed one made
    its collections (and so every server's late turns) slower and slower."""
    record = tmp_path / "requests.bin"
    async with FakeLLMServer(record=record, keep_requests=False) as server:
        async with OpenAICompatProvider(server.url, None) as provider:
            for _ in range(3):
                assert (await provider.complete(HELLO)).text == "echo: hello"
        assert server.requests == []
    bodies, _ = read_recorded(record)
    assert [json.loads(body)["messages"][-1]["content"] for body in bodies] == ["hello"] * 3
    assert read_recorded(str(record)) == read_recorded(record)  # a plugin author's path as text


@pytest.mark.slow
async def test_command_line_server_answers_from_a_script_file(tmp_path: Path) -> None:
    script_file = tmp_path / "replies.json"
    script_file.write_text(json.dumps([{"text": "scripted hello", "chunks": 2}]))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "duragent.testing.fake_llm",
        "--port",
        "0",
        "--script",
        str(script_file),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        banner = (await asyncio.wait_for(process.stdout.readline(), 10)).decode()
        url = banner.rsplit(" ", 1)[-1].strip()
        assert banner.startswith("fake LLM server listening on http://127.0.0.1:")
        async with OpenAICompatProvider(url, None) as provider:
            assert (await provider.complete(HELLO)).text == "scripted hello"
            assert (await provider.complete(HELLO)).text == "echo: hello"
    finally:
        process.terminate()
        assert await asyncio.wait_for(process.wait(), 10) == 0
