"""A key read from a file into the environment often keeps the file's line break (a Kubernetes
secret made with --from-file, an .env written by `echo`). The white space around a key is never
part of it: the provider sends the key alone, instead of failing every turn with aiohttp's
"Forbidden control character detected in headers" (or a 401 for "Bearer  key ")."""

from __future__ import annotations

import pytest

from duragent.errors import ConfigError
from duragent.llm.errors import MissingApiKey
from duragent.llm.registry import create_provider
from duragent.llm.types import LLMRequest, Message
from duragent.testing.fake_llm import FakeLLMServer

pytest_plugins = ["duragent.testing.pytest_plugin"]

KEY = "sk-proj-abcdEFGH12345678"
HELLO = LLMRequest("model-test", (Message("user", "hello there"),))


@pytest.mark.parametrize("stored", [f"{KEY}\n", f"{KEY}\r\n", f"  {KEY} "])
async def test_the_openai_key_is_sent_without_the_white_space_around_it(
    fake_llm: FakeLLMServer, stored: str
) -> None:
    env = {"OPENAI_API_KEY": stored}
    async with create_provider("openai", base_url=fake_llm.url, api_key_env="OPENAI_API_KEY", env=env) as p:
        assert (await p.complete(HELLO)).text == "echo: hello there"
    assert fake_llm.requests[0].headers["Authorization"] == f"Bearer {KEY}"


async def test_the_anthropic_key_is_sent_without_its_line_break(fake_llm: FakeLLMServer) -> None:
    env = {"ANTHROPIC_API_KEY": f"{KEY}\n"}
    async with create_provider("anthropic", base_url=fake_llm.url, env=env) as p:
        assert (await p.complete(HELLO)).text == "echo: hello there"
    assert fake_llm.requests[0].headers["x-api-key"] == KEY


def test_a_key_of_only_white_space_is_a_missing_key() -> None:
    with pytest.raises(MissingApiKey, match="set the environment variable OPENAI_API_KEY"):
        create_provider("openai", env={"OPENAI_API_KEY": " \n"})


def test_a_key_with_a_line_break_inside_names_the_variable_and_not_the_key() -> None:
    with pytest.raises(ConfigError) as caught:
        create_provider("openai", env={"OPENAI_API_KEY": f"{KEY}\n{KEY}"})
    message = str(caught.value)
    assert "OPENAI_API_KEY" in message
    assert "line break or other control character" in message
    assert KEY not in message
