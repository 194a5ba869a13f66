"""A reply cut off by a server that stopped, with notices printed under it, then restarted
(`attempt_restarted`) after reconnecting: the terminal cannot erase the dead text by moving up
over it (it would erase the notices instead and leave the dead text), so it says it is void."""

from __future__ import annotations

import io

from duragent.cli.render import Renderer

GONE = "the server stopped answering; this terminal reconnects"
BACK = "reconnected to the server"


def test_dead_text_with_notices_under_it_is_marked_void_not_erased() -> None:
    out = io.StringIO()
    renderer = Renderer(out=out, tty=True, color=False, markdown=False)
    renderer.token("Partial ans")
    renderer.notice(GONE)
    renderer.notice(BACK)
    renderer.discard_streamed()
    renderer.token("The whole answer")
    renderer.reply("The whole answer")
    shown = out.getvalue()
    assert shown == (
        f"Partial ans\n{GONE}\n{BACK}\n↻ the reply restarted; the text above is void\nThe whole answer\n"
    )
    assert "\x1b[" not in shown  # nothing moved the cursor up over the notices


def test_a_markdown_reply_with_a_notice_under_its_streamed_text_is_not_redrawn_over_it() -> None:
    out = io.StringIO()
    renderer = Renderer(out=out, tty=True, color=False, markdown=True)
    renderer.token("# Title\n\n- one")
    renderer.notice(GONE)
    renderer.reply("# Title\n\n- one")
    shown = out.getvalue()
    assert shown.startswith(f"# Title\n\n- one\n{GONE}\n")
    assert "\x1b[" not in shown


def test_dead_text_right_above_the_cursor_is_still_erased() -> None:
    out = io.StringIO()
    renderer = Renderer(out=out, tty=True, color=False, markdown=False)
    renderer.token("Partial ans")
    renderer.discard_streamed()
    renderer.notice(BACK)  # (after the erase: the next reply's text is not buried by it)
    renderer.token("The whole answer")
    renderer.reply("The whole answer")
    assert out.getvalue() == f"Partial ans\r\x1b[J{BACK}\nThe whole answer\n"
