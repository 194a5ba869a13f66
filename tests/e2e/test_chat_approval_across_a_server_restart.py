"""An approval answered while the workspace's server was stopped is asked again once it runs.

The answer could not reach the server (`cannot reach the Duragent server`); the server, started
again, asked for the call once more (`⚠ approval needed` was drawn), but the terminal counted it
as answered: no question, no prompt, and every key typed went nowhere until Ctrl-C cancelled
the turn.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from duragent.testing.fake_llm import text, tool_calls
from tests.e2e.terminal import DURAGENT, Terminal, client_env
from tests.e2e.test_terminal_clients import ThreadedFakeLLM, fake_model, serve_by_hand, workspace

__all__ = ["fake_model", "workspace"]  # the fixtures this test uses


def serve(workspace: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DURAGENT, "serve", *args],
        cwd=workspace,
        env=client_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_an_answer_the_stopped_server_never_got_is_asked_again_when_it_runs(
    workspace: Path, fake_model: ThreadedFakeLLM
) -> None:
    fake_model.enqueue(tool_calls([("bash", {"command": "rm -rf build"})]), text("Left it alone."))
    # (the default grace, 10 s: the turn waiting for the answer pauses at once, it holds no stop)
    first = serve_by_hand(workspace)[0]
    term = Terminal(["chat"], workspace)
    restarted: subprocess.Popen[bytes] | None = None
    try:
        term.prompt()
        term.type("clean up")
        term.expect(r"approval needed: bash rm -rf build")
        term.question()
        stopped = serve(workspace, "stop")
        assert stopped.returncode == 0, stopped.stderr
        term.expect("stopped answering; this terminal reconnects")
        term.question()
        term.child.send("y")
        term.expect("cannot reach the Duragent server")
        restarted = serve_by_hand(workspace)[0]  # started again
        term.expect("reconnected to the server")
        term.expect(r"approval needed: bash rm -rf build")
        term.question()
        term.child.send("n")
        term.expect("→ deny")
        term.expect(r"⚙ bash rm -rf build … denied")
        term.expect("Left it alone.")
        term.prompt()
        term.child.sendcontrol("d")
        term.finish()
    finally:
        serve(workspace, "stop")
        for process in (first, restarted):
            if process is not None:
                process.wait(60)
