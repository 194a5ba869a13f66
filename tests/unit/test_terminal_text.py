"""What a model, a tool or a remote sender wrote reaches the terminal with its control characters
shown as escapes: a command shown for approval is the command that runs."""

from __future__ import annotations

import io

import pytest

from duragent.cli.render import Renderer
from duragent.terminal_text import printable, shortened

#: A command that, printed as is, erases itself and shows a harmless one in its place.
SPOOF = "touch ~/pwned # \r\x1b[2K⚠ approval needed: bash ls -la"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain text, tabs\tand\nnew lines", "plain text, tabs\tand\nnew lines"),
        ("windows\r\nline ends", "windows\nline ends"),
        ("erase\r\x1b[2Kthis", "erase\\r\\x1b[2Kthis"),
        ("bell\x07 backspace\x08 nul\x00", "bell\\x07 backspace\\b nul\\0"),
        ("c1 csi \x9b31m", "c1 csi \\x9b31m"),
        ("trojan \u202eevil\u202c source", "trojan \\u202eevil\\u202c source"),
        ("emoji ⚠ and accents é stay", "emoji ⚠ and accents é stay"),
    ],
)
def test_control_characters_are_shown_as_escapes(text: str, shown: str) -> None:
    assert printable(text) == shown


def rendered(tty: bool, draw: str, *args: object) -> str:
    out = io.StringIO()
    renderer = Renderer(out=out, tty=tty, color=tty, markdown=False)
    getattr(renderer, draw)(*args)
    renderer.close()
    return out.getvalue()


@pytest.mark.parametrize("tty", [True, False])
def test_the_approval_line_shows_the_command_that_would_run(tty: bool) -> None:
    shown = rendered(tty, "approval", "bash", SPOOF)
    assert "\r" not in shown
    assert "\x1b[2K" not in shown
    assert "touch ~/pwned # \\r\\x1b[2K⚠ approval needed: bash ls -la" in shown


@pytest.mark.parametrize("tty", [True, False])
def test_streamed_text_and_replies_cannot_move_the_cursor(tty: bool) -> None:
    for draw in ("token", "reply", "user", "error", "notice"):
        shown = rendered(tty, draw, "hi\x1b]0;new window title\x07\x1b[1A")
        assert "\x1b]0;" not in shown, draw
        assert "\x1b[1A" not in shown, draw
        assert "hi\\x1b]0;new window title\\x07\\x1b[1A" in shown, draw


def test_a_tool_line_shows_escapes_in_its_arguments() -> None:
    out = io.StringIO()
    renderer = Renderer(out=out, tty=False, color=False)
    renderer.tool_call("c1", "read_file", {"path": "notes\x1b[8m.md"})
    renderer.tool_result("c1", "read_file", True, 3)
    assert out.getvalue() == "⚙ read_file notes\\x1b[8m.md … ok 3 ms\n"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("fits exactly here", "fits exactly here"),
        ("book a table for two at eight", "book a table for…"),
        ("supercalifragilisticexpialidocious", "supercalifragili…"),
    ],
)
def test_a_shortened_text_keeps_its_width_and_whole_words_where_it_can(text: str, shown: str) -> None:
    assert shortened(text, 17) == shown
    assert len(shortened(text, 17)) <= 17
