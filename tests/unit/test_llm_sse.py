"""The model client's SSE parser and the JSON decoding of what providers stream."""

from __future__ import annotations

import json

import pytest

from duragent import json_text
from duragent.llm.sse import SseEvent, SseParser

STREAM = (
    ": keep-alive\n\n"
    'data: {"content": "héllo ☕"}\n\n'
    "event: content_block_delta\r\n"
    'data:{"a": 1}\r\n'
    "data\r\n"
    "data:  two spaces\r\n\r\n"
    "id: 3\nretry: 10\ndata: [DONE]\n\n"
).encode()
EXPECTED = [
    SseEvent("", '{"content": "héllo ☕"}'),
    SseEvent("content_block_delta", '{"a": 1}\n\n two spaces'),
    SseEvent("", "[DONE]"),
]


def test_events_split_at_any_byte_come_out_whole_and_in_order() -> None:
    assert SseParser().feed(STREAM) == EXPECTED
    for size in (1, 2, 3, 7, 64):
        parser = SseParser()
        events: list[SseEvent] = []
        for start in range(0, len(STREAM), size):
            events += parser.feed(STREAM[start : start + size])
        assert events == EXPECTED, size


def test_broken_utf8_becomes_a_replacement_character_and_the_rest_survives() -> None:
    parser = SseParser()
    events = parser.feed(b"data: caf\xc3\n\ndata: ok\n\n")
    assert events == [SseEvent("", "caf\ufffd"), SseEvent("", "ok")]


def test_the_last_event_without_a_blank_line_comes_out_at_the_end() -> None:
    parser = SseParser()
    assert parser.feed(b"event: done\ndata: x") == []
    assert parser.flush() == [SseEvent("done", "x")]


@pytest.mark.parametrize("text", ['{"a": [1, 2]}', ' {"a": 1}\n', "[]", '"x"', "3"])
def test_json_text_loads_what_json_loads(text: str) -> None:
    assert json_text.loads(text) == json.loads(text)


@pytest.mark.parametrize("text", ['{"a": 1} {"b": 2}', '\ufeff{"a": 1}', '{"a": ', ""])
def test_json_text_refuses_what_json_refuses(text: str) -> None:
    with pytest.raises(json.JSONDecodeError):
        json_text.loads(text)


def test_a_lone_surrogate_escape_becomes_a_replacement_character() -> None:
    assert json_text.loads('{"content": "a\\ud83d"}') == {"content": "a\ufffd"}
