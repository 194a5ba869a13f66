"""The fast paths (`send`, `chat`, `serve` without typer) end like the full commands do."""

from __future__ import annotations

import pytest

import duragent.cli
import duragent.cli.quick_send
from duragent.client.launcher import ServerStartFailed


def run_main(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr("sys.argv", ["duragent", *args])
    with pytest.raises(SystemExit) as exit_:
        duragent.cli.main()
    return int(exit_.value.code or 0)


def test_a_server_that_never_becomes_ready_is_an_error_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def never_ready(args: list[str]) -> int:
        raise ServerStartFailed("the server started for this workspace was not ready within 30 s")

    monkeypatch.setattr(duragent.cli.quick_send, "quick_send", never_ready)
    code = run_main(monkeypatch, "send", "hi")
    err = capsys.readouterr().err
    assert code == ServerStartFailed.exit_code
    assert err.startswith("error: the server started for this workspace was not ready")
    assert "Traceback" not in err


def test_ctrl_c_while_the_server_starts_says_aborted(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(args: list[str]) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(duragent.cli.quick_send, "quick_send", interrupted)
    assert run_main(monkeypatch, "send", "hi") == 130
    assert capsys.readouterr().err.strip() == "Aborted!"
