"""Arguments the model gets wrong are refused before anything starts, naming the field: a NUL in
the command or workdir failed deep in the spawn ("failed unexpectedly: ValueError: embedded null
byte"), and `timeout: 0s` was taken for no timeout at all (the default hour)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from duragent.testing.fake_llm import FakeLLMServer, text
from tests.integration.test_process_completion import Server, contents, spawn, start
from tests.waiting import until

__all__ = ["start"]  # the fixtures

pytest_plugins = ["duragent.testing.pytest_plugin"]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"command": "echo a\x00b"}, "command: must not contain a NUL character"),
        ({"command": "pwd", "workdir": "sub\x00dir"}, "workdir: must not contain a NUL character"),
        ({"command": "sleep 600", "timeout": "0s"}, "timeout: must be longer than 0 s"),
    ],
)
async def test_a_spawn_with_a_bad_argument_says_which_and_starts_nothing(
    start: Callable[[str], Server], fake_llm: FakeLLMServer, fields: dict[str, str], expected: str
) -> None:
    server = start("continue")
    command = fields.pop("command")
    fake_llm.enqueue(spawn(command, **fields), text("I see."))
    live = await server.manager.create("helper")

    await live.submit("start it")
    await until(lambda: contents(server, live.session_id, "assistant")[-1:] == ["I see."])

    [result] = contents(server, live.session_id, "tool")
    assert result.startswith("invalid arguments for background_process: "), result
    assert expected in result
    assert server.processes.list() == []
