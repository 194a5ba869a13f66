"""The terminal throws away text of a turn's attempt that died (`attempt_restarted`)."""

from __future__ import annotations

import io

from duragent.cli.render import Renderer


def test_text_of_a_dead_attempt_is_marked_void_in_a_pipe_and_the_new_reply_follows() -> None:
    out = io.StringIO()
    renderer = Renderer(out=out, tty=False, color=False)
    renderer.token("Partial ans")
    renderer.discard_streamed()
    renderer.token("The whole answer")
    renderer.reply("The whole answer")
    assert out.getvalue() == "Partial ans\n↻ the reply restarted; the text above is void\nThe whole answer\n"


def test_text_of_a_dead_attempt_is_erased_on_a_terminal() -> None:
    out = io.StringIO()
    renderer = Renderer(out=out, tty=True, color=False, markdown=False)
    renderer.token("Partial ans")
    renderer.discard_streamed()
    renderer.token("The whole answer")
    renderer.reply("The whole answer")
    shown = out.getvalue()
    assert shown == "Partial ans\r\x1b[JThe whole answer\n"
    assert "void" not in shown


def test_a_restart_with_nothing_streamed_shows_nothing() -> None:
    out = io.StringIO()
    renderer = Renderer(out=out, tty=False, color=False)
    renderer.discard_streamed()
    assert out.getvalue() == ""
