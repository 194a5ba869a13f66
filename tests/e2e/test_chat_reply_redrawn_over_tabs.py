"""A reply streamed on a terminal is erased and re-drawn as Markdown: all of it, tabs included.

The erase moves the cursor up over the rows the streamed text took. A tab was counted as one
column, where the terminal moves to the next multiple of 8: a tab-indented code line (Go, a
Makefile) that wrapped on screen was counted as one row, and the first rows of the streamed
reply stayed above its Markdown version, shown twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pexpect

from duragent.testing.fake_llm import text
from tests.e2e.screen import Screen
from tests.e2e.terminal import DURAGENT, PATIENCE, client_env
from tests.e2e.test_terminal_clients import ThreadedFakeLLM, fake_model, server, workspace

__all__ = ["fake_model", "server", "workspace"]  # the fixtures this test uses

COLUMNS, LINES = 40, 30


def test_a_streamed_reply_with_tab_indented_lines_is_replaced_whole_by_its_markdown(
    workspace: Path, server: dict[str, Any], fake_model: ThreadedFakeLLM
) -> None:
    reply = (
        "Here it is:\n\n```go\nfunc main() {\n\tif ready {\n"
        "\t\t\t\treturn launchTheWholeThingNow()\n\t}\n}\n```\nThat is all."
    )
    fake_model.enqueue(text(reply, chunks=8))
    child = pexpect.spawn(
        DURAGENT[0],
        [*DURAGENT[1:], "send", "show me the code"],
        cwd=str(workspace),
        env=client_env(COLUMNS=str(COLUMNS), LINES=str(LINES)),
        encoding="utf-8",
        timeout=PATIENCE,
        dimensions=(LINES, COLUMNS),
    )
    output = child.read()
    child.close()
    assert child.exitstatus == 0, output

    screen = Screen(COLUMNS, LINES)
    screen.feed(output)
    shown = screen.text()
    assert shown.count("Here it is:") == 1, shown
    assert shown.count("func main()") == 1, shown
    assert shown.count("launchTheWholeThingNow") == 1, shown
    assert shown.count("That is all.") == 1, shown
