"""Tool lines in the terminal: the call, its arguments cut to one line, and the outcome."""

from __future__ import annotations

import io

from duragent.cli.render import Renderer


def tool_line(arguments: dict[str, str]) -> str:
    out = io.StringIO()
    renderer = Renderer(out=out, tty=False, color=False)
    renderer.tool_call("c1", "bash", arguments)
    renderer.tool_result("c1", "bash", True, 12)
    return out.getvalue()


def test_a_short_command_is_shown_whole_with_its_outcome() -> None:
    assert tool_line({"command": "ls -la"}) == "⚙ bash ls -la … ok 12 ms\n"


def test_a_long_command_is_cut_with_one_ellipsis() -> None:
    shown = tool_line({"command": "echo " + "x" * 300})
    assert shown.endswith("… ok 12 ms\n")
    assert "… …" not in shown
