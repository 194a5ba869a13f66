"""Ctrl-C at one of `duragent init`'s questions: `Aborted!` on a line of its own, status 130,
and no workspace."""

from __future__ import annotations

from pathlib import Path

import pexpect
import pytest

from tests.e2e.terminal import Terminal

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_ctrl_c_at_the_first_question_aborts_on_its_own_line(tmp_path: Path) -> None:
    init = Terminal(["init", "ws"], tmp_path)
    init.expect("Agent name")
    init.child.sendintr()
    init.child.expect(pexpect.EOF)
    init.child.close()
    assert "^C\r\nAborted!\r\n" in init.child.before
    assert init.child.exitstatus == 130
    assert not (tmp_path / "ws").exists()
