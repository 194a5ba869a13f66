"""Some OpenAI-compatible servers (llama.cpp's server with `--tool-args-object`, Hugging Face
TGI) send a tool call's `arguments` as a JSON object rather than a string holding JSON: the
call gets those arguments, not the text of a Python dict it cannot parse."""

from __future__ import annotations

import json
from typing import Any

from duragent.llm.openai_compat import OpenAICompatProvider
from duragent.llm.retry import RetryPolicy
from duragent.llm.types import LLMRequest, Message, ToolCall
from duragent.testing.fake_llm import FakeLLMServer, raw

pytest_plugins = ["duragent.testing.pytest_plugin"]

HELLO = LLMRequest("local-model", (Message("user", "what is the payment status of T1001?"),))


def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
    return (
        "data: " + json.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}) + "\n\n"
    )


async def test_arguments_sent_as_an_object_become_the_calls_arguments(fake_llm: FakeLLMServer) -> None:
    call = {
        "index": 0,
        "id": "0",
        "type": "function",
        "function": {"name": "payment_status", "arguments": {"transaction_id": "T1001", "détail": True}},
    }
    fake_llm.enqueue(raw(chunk({"tool_calls": [call]}), chunk({}, "tool_calls"), "data: [DONE]\n\n"))
    async with OpenAICompatProvider(fake_llm.url, None, retry=RetryPolicy(max_attempts=1)) as provider:
        completion = await provider.complete(HELLO)
    assert completion.tool_calls == (
        ToolCall("0", "payment_status", {"transaction_id": "T1001", "détail": True}),
    )
