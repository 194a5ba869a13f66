"""The provider protocol every model backend implements, and the non-streaming call built on it."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from duragent.llm.types import (
    Completion,
    Finish,
    FinishReason,
    LLMRequest,
    StreamChunk,
    TextDelta,
    ToolCall,
    ToolCallComplete,
    Usage,
)


@runtime_checkable
class Provider(Protocol):
    """A language model backend.

    `stream` yields chunks in the order documented in `duragent.llm.types`. Consume it inside
    `contextlib.aclosing(...)` (or to the end) so an abandoned stream closes its HTTP response.
    """

    name: str

    def stream(
        self, request: LLMRequest, *, sent: Callable[[], None] | None = None
    ) -> AsyncGenerator[StreamChunk, None]:
        """Stream the model's reply to `request`.

        `sent` (if given) is called once the request is on its way (connected, its headers
        written), and before any wait to try again: from then on the caller only waits for the
        model. It may be called more than once; a provider that cannot tell need not call it.
        """
        ...

    async def complete(self, request: LLMRequest) -> Completion:
        """The model's whole reply to `request`, gathered from `stream`."""
        ...

    async def close(self) -> None:
        """Release the provider's connections."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...


async def collect_completion(chunks: AsyncGenerator[StreamChunk, None]) -> Completion:
    """Gather a stream into one `Completion`; the stream is closed even if gathering fails."""
    text: list[str] = []
    tool_calls: list[ToolCall] = []
    usage: Usage | None = None
    finish: FinishReason = "error"
    async with aclosing(chunks) as stream:
        async for chunk in stream:
            if isinstance(chunk, TextDelta):
                text.append(chunk.text)
            elif isinstance(chunk, ToolCallComplete):
                tool_calls.append(chunk.tool_call)
            elif isinstance(chunk, Usage):
                usage = chunk
            elif isinstance(chunk, Finish):
                finish = chunk.reason
    return Completion(text="".join(text), tool_calls=tuple(tool_calls), usage=usage, finish=finish)
