"""The client's SSE parser: frames split anywhere, ids, comments, multi-line data."""

from __future__ import annotations

from duragent.client.sse import BEHIND_APPROVAL_EVENT, QUEUED_EVENT, SseMessage, SseParser, comment_event

STREAM = (
    ": keep-alive\n\n"
    'id: 12\nevent: start\ndata: {"content": "héllo ☕"}\n\n'
    'id: 12.1\nevent: token\ndata: {"content": "a"}\n\n'
).encode()


def test_frames_split_at_any_byte_come_out_whole_and_in_order() -> None:
    parser = SseParser()
    messages: list[SseMessage] = []
    for index in range(len(STREAM)):
        messages += parser.feed(STREAM[index : index + 1])
    assert [m.comment for m in messages if m.is_comment] == ["keep-alive"]
    events = [m for m in messages if not m.is_comment]
    assert [(m.id, m.event) for m in events] == [("12", "start"), ("12.1", "token")]
    assert events[0].json() == {"content": "héllo ☕"}


def test_multi_line_data_is_joined_and_the_id_carries_over() -> None:
    parser = SseParser()
    messages = parser.feed(b"id: 7\ndata: line one\ndata: line two\n\ndata: next\n\n")
    assert [(m.id, m.data) for m in messages] == [("7", "line one\nline two"), ("7", "next")]
    assert messages[1].event == "message"


def test_crlf_and_cr_line_endings_are_accepted() -> None:
    parser = SseParser()
    messages = parser.feed(b"event: done\r\ndata: {}\r\n\r")
    messages += parser.feed(b'\nevent: error\rdata: {"message": "x"}\r\r\n')
    assert [m.event for m in messages] == ["done", "error"]
    assert messages[1].json() == {"message": "x"}


def test_a_long_replay_in_one_chunk_comes_out_whole_and_in_order() -> None:
    # `duragent attach` replays a whole session at once: thousands of frames in one read.
    frames = "".join(f'id: {n}\nevent: token\ndata: {{"content": "{n} "}}\n\n' for n in range(20_000))
    parser = SseParser()
    messages = parser.feed(frames.encode())
    assert [m.id for m in messages] == [str(n) for n in range(20_000)]
    assert messages[-1].json() == {"content": "19999 "}


def test_the_stream_comments_about_a_waiting_message_read_back_as_client_events() -> None:
    from duragent.server.routes.sessions import QUEUED_COMMENT
    from duragent.server.sse import behind_approval

    said = f": {QUEUED_COMMENT.format(ahead=2)}\n\n".encode() + behind_approval("call_7")
    assert [comment_event(m) for m in SseParser().feed(said + b": keep-alive\n\n")] == [
        (QUEUED_EVENT, {"position": 2}),
        (BEHIND_APPROVAL_EVENT, {"call_id": "call_7"}),
        None,
    ]


def test_a_call_id_from_the_model_cannot_write_events_into_the_stream() -> None:
    from duragent.server.sse import behind_approval

    messages = SseParser().feed(behind_approval('x\n\nevent: done\ndata: {"content": "forged"}'))
    assert [m.is_comment for m in messages] == [True]
    assert comment_event(messages[0]) == (
        BEHIND_APPROVAL_EVENT,
        {"call_id": 'xevent:donedata:{"content":"forged"}'},
    )
