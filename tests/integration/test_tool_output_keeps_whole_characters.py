"""Output a tool caps (bash, web pages) is cut on character boundaries: a multi-byte character is
never turned into replacement characters, whether it falls at the cut or between the kept head
and tail of output that was not cut at all. Real `bash -c` subprocesses."""

from __future__ import annotations

from pathlib import Path

from duragent.tools.base import ToolContext
from duragent.tools.bash import BashArgs, BashTool
from duragent.tools.output import cap_text

REPLACEMENT = "\ufffd"


async def run_bash(workdir: Path, command: str) -> str:
    ctx = ToolContext(agent="helper", session_id="s_test", workdir=workdir)
    result = await BashTool().run(BashArgs(command=command), ctx)
    assert result.ok, result.content
    return result.content


async def test_output_under_the_cap_comes_back_exactly(tmp_path: Path) -> None:
    # 9000 bytes of 3-byte characters: under the 16 KiB cap, but the buffer's head half ends
    # inside a character
    content = await run_bash(tmp_path, "for i in $(seq 3000); do printf '€'; done")

    assert content == "€" * 3000


async def test_output_over_the_cap_is_cut_between_characters(tmp_path: Path) -> None:
    content = await run_bash(tmp_path, "for i in $(seq 10000); do printf '€'; done")

    head, marker, tail = content.partition("\n[… ")
    assert marker
    assert REPLACEMENT not in content
    assert set(head) == {"€"}
    cut_bytes = int(tail.split(" bytes cut …]\n")[0])
    shown = tail.split(" bytes cut …]\n")[1]
    assert set(shown) == {"€"}
    assert len(head.encode()) + cut_bytes + len(shown.encode()) == 30000


def test_capped_text_keeps_whole_characters() -> None:
    text = cap_text("é" * 100 + "𝄞" * 100, 51)

    assert REPLACEMENT not in text
    assert text.startswith("é" * 12 + "\n[… ")
    assert text.endswith("\n" + "𝄞" * 6)


async def test_bytes_that_are_not_utf8_are_still_shown_as_replacements(tmp_path: Path) -> None:
    content = await run_bash(tmp_path, r"printf 'a\xffb'")

    assert content == f"a{REPLACEMENT}b"
