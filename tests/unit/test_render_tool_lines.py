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


def result_line(ok: bool, duration_ms: int | None, content: str) -> str:
    out = io.StringIO()
    renderer = Renderer(out=out, tty=False, color=False)
    renderer.tool_call("c1", "bash", {"command": "sleep 30"})
    renderer.tool_result("c1", "bash", ok, duration_ms, content)
    return out.getvalue()


def test_a_call_stopped_by_a_cancel_says_cancelled_not_failed_in_zero_ms() -> None:
    """ "failed 0 ms" after 3 s was a lie: a call the runtime stopped says so (a cancelled one's
    duration_ms is how long it ran before the cancel, not how long it took)."""
    assert result_line(False, None, "cancelled: the turn was cancelled") == "⚙ bash sleep 30 … cancelled\n"
    assert result_line(False, 3012, "cancelled: the turn was cancelled") == "⚙ bash sleep 30 … cancelled\n"
    assert result_line(False, None, "denied by policy: bash sleep 30") == "⚙ bash sleep 30 … denied\n"
    assert (
        result_line(False, None, "interrupted by restart")
        == "⚙ bash sleep 30 … failed: interrupted by restart\n"
    )
    assert result_line(False, 3, "exit status 1") == "⚙ bash sleep 30 … failed 3 ms: exit status 1\n"


def test_a_failed_call_says_why_in_its_last_line() -> None:
    """`⚙ bash … failed 0 ms` said nothing of arguments that were not JSON, or of a restart."""
    assert result_line(False, 0, "invalid arguments for bash: not a JSON object: {'cmd'") == (
        "⚙ bash sleep 30 … failed 0 ms: invalid arguments for bash: not a JSON object: {'cmd'\n"
    )
    assert (
        result_line(False, 41, "no such file\n\n[exit code 1]\n")
        == "⚙ bash sleep 30 … failed 41 ms: [exit code 1]\n"
    )
    assert result_line(False, 5, "x" * 200).endswith("…\n")
    assert result_line(False, 5, "\x1b[2Kgone") == "⚙ bash sleep 30 … failed 5 ms: \\x1b[2Kgone\n"
