"""What every HTTP provider shares: one aiohttp session, retries, timeouts, cancellation, error text.

We talk to providers with aiohttp rather than vendor SDKs: it is already a dependency (the
server uses it), and owning the HTTP call gives us full control of streaming, idle timeouts,
retries before the first chunk, and closing the connection the moment a turn is cancelled.

A subclass says where to POST, what body and headers to send, and how to decode the SSE events
of one reply (`StreamDecoder`); this module does the rest.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import re
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from functools import cached_property
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self
from urllib.parse import urlsplit

from duragent.llm.base import collect_completion
from duragent.llm.errors import (
    ContextTooLong,
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderUnavailable,
    StreamError,
    StreamTimeout,
    TransientStreamError,
)
from duragent.llm.retry import RetryPolicy, is_retryable_status, retry_after_from
from duragent.llm.sse import SseEvent, SseParser
from duragent.llm.types import (
    Completion,
    Finish,
    LLMRequest,
    Retrying,
    StreamChunk,
    TextDelta,
    ToolCallComplete,
)
from duragent.secrets import MIN_SECRET_LENGTH

if TYPE_CHECKING:
    import aiohttp

logger = logging.getLogger(__name__)

_READ_SIZE = 64 * 1024
_EVENT_STREAM = "text/event-stream"
#: A `data:` line: what shows a reply labelled otherwise to be a stream of events after all.
_EVENT_LINE = re.compile(rb"(?:^|\n)data:")
#: Bytes of a reply without an event after which it is taken for something else (a web page).
_NOT_A_STREAM_AFTER = 64 * 1024
#: Seconds a finished reply's connection may take to send the rest of its body (the chunked
#: encoding's end, usually a read behind `[DONE]`) before it is closed instead of reused.
_DRAIN_SECONDS = 5.0


#: Chunks that make a reply begun: once one was given out, a failure is not retried (the text
#: was shown, the call may be kept). A call's pieces (`ToolCallDelta`) and token counts are not.
_KEPT_CHUNKS = (TextDelta, ToolCallComplete, Finish)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds to wait for a connection, and for the next bytes of a reply (headers included)."""

    connect: float = 30.0
    idle: float = 300.0


class StreamDecoder(Protocol):
    """Turns one reply's SSE events into stream chunks; one decoder per attempt."""

    def feed(self, event: SseEvent) -> list[StreamChunk]:
        """Chunks for this event; raises StreamError for a malformed event or an error event."""
        ...

    def end(self) -> list[StreamChunk]:
        """The body ended: the final chunks (ending with Finish), or StreamError if it was cut short."""
        ...

    @property
    def answered(self) -> bool:
        """The reply's finish reason has arrived: it is whole even if its end (usage, the end
        marker) never does."""
        ...


class _TransientFailure(Exception):
    """A failure worth retrying if nothing has been yielded yet; `error` is raised when we give up."""

    def __init__(self, error: ProviderError, retry_after: float | None = None):
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


class HttpProvider(ABC):
    """A provider reached over HTTP with a streaming (SSE) endpoint."""

    def __init__(
        self,
        *,
        provider_name: str,
        api_key: str | None,
        api_key_env: str | None,
        headers: Mapping[str, str] | None = None,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
    ):
        self.name = provider_name
        self.api_key = api_key
        self.api_key_env = api_key_env
        self.extra_headers = dict(headers or {})
        self.retry = retry or RetryPolicy()
        self.timeouts = timeouts or Timeouts()
        self._session: aiohttp.ClientSession | None = None
        #: Finished replies whose body's end is still on its way, each with the timer that closes
        #: it if the end does not come (see `_reuse_when_ended`).
        self._draining: dict[aiohttp.ClientResponse, asyncio.TimerHandle] = {}

    @property
    @abstractmethod
    def endpoint(self) -> str:
        """The URL replies are streamed from."""

    @abstractmethod
    def build_payload(self, request: LLMRequest) -> dict[str, Any]:
        """The JSON body for `request`, in the provider's wire format."""

    def encode_body(self, request: LLMRequest) -> bytes:
        """The request body as sent: `build_payload` as JSON (a provider may encode it faster)."""
        return json.dumps(self.build_payload(request), ensure_ascii=False).encode()

    @abstractmethod
    def auth_headers(self) -> dict[str, str]:
        """Headers carrying the API key (empty when there is none)."""

    @abstractmethod
    def new_decoder(self) -> StreamDecoder:
        """A fresh decoder for one reply."""

    def drop_refused_option(self, error: ProviderError) -> bool:
        """Whether `error` refused an optional field this provider now stops sending (so the
        request is worth sending again without it); none by default."""
        return False

    async def stream(
        self, request: LLMRequest, *, sent: Callable[[], None] | None = None
    ) -> AsyncGenerator[StreamChunk, None]:
        """Stream the reply, retrying transient failures that happen before its first text or
        whole tool call (tool call pieces and token counts alone are nothing a caller keeps).

        `sent` is called once each attempt's request headers are written (see `Provider.stream`).
        """
        url = self.endpoint
        body = self.encode_body(request)
        headers = {**self.auth_headers(), **self.extra_headers, "Content-Type": "application/json"}
        began = time.monotonic()
        for attempt in range(1, self.retry.max_attempts + 1):
            started = False
            try:
                async for chunk in self._attempt(url, body, headers, sent):
                    started = started or isinstance(chunk, _KEPT_CHUNKS)
                    yield chunk
                return
            except ProviderError as error:
                self._hide_secrets_in(error)
                if started or not self.drop_refused_option(error):
                    raise
                # (once per provider: from now on its requests leave the option out)
                async with aclosing(self.stream(request, sent=sent)) as again:
                    async for chunk in again:
                        yield chunk
                return
            except _TransientFailure as failure:
                self._hide_secrets_in(failure.error)
                failure.args = (str(failure.error),)
                if started:
                    raise failure.error from failure
                if attempt == self.retry.max_attempts:
                    failure.error.explain(_gave_up(failure, attempt, time.monotonic() - began))
                    raise failure.error from failure
                delay = self._wait_before_retry(failure, attempt)
                if sent is not None:
                    sent()  # the caller's part is over while this waits (the connection may have failed)
                yield Retrying(attempt + 1, self.retry.max_attempts, delay, str(failure.error))
                await asyncio.sleep(delay)

    @property
    def draining(self) -> int:
        """Finished replies whose body's end has not arrived yet (their connections not yet pooled)."""
        return len(self._draining)

    async def complete(self, request: LLMRequest) -> Completion:
        """The whole reply, gathered from `stream`."""
        return await collect_completion(self.stream(request))

    async def close(self) -> None:
        """Close the HTTP session and its connections."""
        for response, timer in self._draining.items():
            timer.cancel()
            response.close()
        self._draining.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def _wait_before_retry(self, failure: _TransientFailure, attempt: int) -> float:
        if failure.retry_after is not None and failure.retry_after > self.retry.max_retry_after:
            failure.error.explain(_wait_too_long(failure.retry_after, self.retry.max_retry_after))
            raise failure.error from failure
        delay = failure.retry_after if failure.retry_after is not None else self.retry.backoff(attempt)
        logger.warning(
            "%s; attempt %d of %d, retrying in %.2f s", failure.error, attempt, self.retry.max_attempts, delay
        )
        return delay

    def _client(self) -> aiohttp.ClientSession:
        import aiohttp

        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(
                total=None,
                connect=self.timeouts.connect,
                sock_connect=self.timeouts.connect,
                sock_read=self.timeouts.idle,
            )
            # No connection limit (aiohttp's default is 100): every streaming reply holds a
            # connection for its whole length, so a cap would make session 101 wait for session
            # 1's reply to finish. Concurrency is bounded by the live sessions instead.
            connector = aiohttp.TCPConnector(limit=0)
            # aiohttp's tracing is its one way to say when a request has been written (before the
            # reply's headers, which take as long as the model takes to start).
            on_sent = aiohttp.TraceConfig()
            on_sent.on_request_headers_sent.append(_tell_sent)
            self._session = aiohttp.ClientSession(
                timeout=timeout, connector=connector, trace_configs=[on_sent]
            )
        return self._session

    async def _attempt(
        self, url: str, body: bytes, headers: dict[str, str], sent: Callable[[], None] | None = None
    ) -> AsyncGenerator[StreamChunk, None]:
        import aiohttp

        if self._url_credentials and any(name.lower() == "authorization" for name in headers):
            raise ProviderError(
                f"spec.model.base_url of {self.name} holds a user name and password, and its API key "
                "is sent too (both would be the Authorization header): keep one of them",
                provider=self.name,
            )
        try:
            response = await self._client().post(url, data=body, headers=headers, trace_request_ctx=sent)
        except TimeoutError as exc:
            if isinstance(exc, aiohttp.ConnectionTimeoutError):
                raise _TransientFailure(self._unreachable(url, "connection timed out")) from exc
            raise self._idle_timeout(url) from exc
        except aiohttp.ClientConnectionError as exc:
            raise _TransientFailure(self._unreachable(url, str(exc) or type(exc).__name__)) from exc
        except aiohttp.ClientError as exc:  # e.g. an invalid base_url: retrying cannot help
            raise ProviderError(
                f"request to {self.name} at {url} failed: {exc}", provider=self.name, url=url
            ) from exc
        finished = False
        try:
            if response.status >= 400:
                raise await self._status_error(response, url)
            # (read ahead only when the reply is not labelled a stream, to see whether it is one)
            unread = (
                b"" if response.content_type == _EVENT_STREAM else await self._first_events(response, url)
            )
            decoder = self.new_decoder()
            parser = SseParser()
            while not finished:
                try:
                    data = unread or await self._read(response, url)
                except _TransientFailure:
                    if not decoder.answered:
                        raise
                    data = b""  # a whole reply whose end was lost (a proxy reset it): ended here
                unread = b""
                chunks: list[StreamChunk] = []
                broken: StreamError | None = None
                try:
                    for event in parser.feed(data) if data else parser.flush():
                        chunks += decoder.feed(event)
                    if not data:
                        chunks += decoder.end()
                except StreamError as error:
                    broken = error  # what arrived before the bad chunk is still delivered
                for chunk in _joined_text(chunks):
                    yield chunk
                    finished = finished or isinstance(chunk, Finish)
                if broken is not None:
                    self._hide_secrets_in(broken)
                    # (`stream` retries it only if nothing of the reply was yielded)
                    raise _TransientFailure(broken) if isinstance(broken, TransientStreamError) else broken
                finished = finished or not data
        finally:
            # An unfinished body (error, cancellation, abandoned iterator) must not go back to the
            # pool: closing it is what tells the server the client has gone.
            if not finished:
                response.close()
            elif response.content.at_eof():
                response.release()
            else:
                self._reuse_when_ended(response)

    def _reuse_when_ended(self, response: aiohttp.ClientResponse) -> None:
        """Pool a finished reply's connection once the end of its body arrives; close it if the
        end does not come within `_DRAIN_SECONDS`.

        The reply is complete at `[DONE]`, but the body's own end often arrives a read later;
        released before it, the connection would be closed, and the next request would pay for
        a new one (a connect and its handshake, a quarter of the turns on loopback). The turn
        does not wait for it, and nothing reads it: the body's stream calls back at its end (a
        task reading it to the end cost a tenth of the client's work per request). A connection
        that breaks instead never calls back; the timer closes the reply.
        """
        loop = asyncio.get_running_loop()

        def give_up() -> None:
            if self._draining.pop(response, None) is not None:
                response.close()

        def ended() -> None:
            timer = self._draining.pop(response, None)
            if timer is not None:
                timer.cancel()
                # Once the connection's protocol has finished with the end (this runs inside it).
                loop.call_soon(response.release)

        self._draining[response] = loop.call_later(_DRAIN_SECONDS, give_up)
        response.content.on_eof(ended)

    async def _read(self, response: aiohttp.ClientResponse, url: str) -> bytes:
        import aiohttp

        try:
            # The idle limit is the session's sock_read timeout (`_client`), re-armed by aiohttp
            # as data arrives: no timer of our own per read.
            return await response.content.readany()
        except TimeoutError as exc:
            raise self._idle_timeout(url) from exc
        except aiohttp.ClientError as exc:
            reason = (
                "the server closed the connection before the reply was complete"
                if isinstance(exc, aiohttp.ClientPayloadError)
                else str(exc) or type(exc).__name__
            )
            error = StreamError(
                f"the connection to {self.name} broke mid-stream ({url}): {reason}",
                provider=self.name,
                url=url,
            )
            raise _TransientFailure(error) from exc

    async def _first_events(self, response: aiohttp.ClientResponse, url: str) -> bytes:
        """The start of a reply not labelled `text/event-stream`, once it shows an event (some
        servers label their stream `text/plain`); a ProviderError saying what it is otherwise."""
        start = b""
        while data := await self._read(response, url):
            start += data
            if _EVENT_LINE.search(start):
                return start
            if len(start) > _NOT_A_STREAM_AFTER:
                break
        what = server_message(start.decode("utf-8", errors="replace")) or "an empty body"
        raise ProviderError(
            f"{self.name} at {url} answered {response.status} with {response.content_type}, not a "
            f"stream of events: {self._without_secrets(what)}; check spec.model.base_url in agent.yaml "
            "(the API's address, which often ends in /v1)",
            provider=self.name,
            status=response.status,
            url=url,
        )

    async def _status_error(self, response: aiohttp.ClientResponse, url: str) -> Exception:
        import aiohttp

        status = response.status
        try:
            body = await response.text(errors="replace")
        except (aiohttp.ClientError, TimeoutError):
            body = ""
        detail = self._without_secrets(server_message(body) or response.reason or "no details")
        where = f"{status} from {self.name} at {url}"
        if status in (401, 403):
            return ProviderAuthError(
                f"{where}: {self._rejected_key_text()} (server said: {detail}){self._fix_key_hint()}",
                provider=self.name,
                status=status,
                url=url,
            )
        if status in (400, 413, 422) and _CONTEXT_OVERFLOW.search(body):
            limit = _context_limit(body)
            return ContextTooLong(
                f"{where}: the conversation is too long for the model: {detail}",
                provider=self.name,
                status=status,
                url=url,
                limit=limit,
            )
        if status == 404:
            detail += "; check spec.model.name and spec.model.base_url in agent.yaml"
        if response.history:
            # (a 301 or 302 is followed as a GET, which a model server refuses: 405 or 404)
            detail += (
                f"; the request was redirected ({response.history[0].status}) to {response.url}: set "
                "spec.model.base_url in agent.yaml to the address it moved to"
            )
        if status == 429 and _NO_CREDIT.search(body):
            return ProviderError(
                f"{where}: {detail}; {self._no_credit_text()}", provider=self.name, status=status, url=url
            )
        if not is_retryable_status(status):
            return ProviderError(f"{where}: {detail}", provider=self.name, status=status, url=url)
        retry_after = retry_after_from(response.headers)
        error: ProviderError
        if status == 429:
            error = ProviderRateLimited(
                f"{where}: rate limited: {detail}", provider=self.name, url=url, retry_after=retry_after
            )
        else:
            error = ProviderUnavailable(f"{where}: {detail}", provider=self.name, status=status, url=url)
        return _TransientFailure(error, retry_after)

    @cached_property
    def _url_credentials(self) -> str:
        """The `user:password` of a base_url like `http://user:password@host/v1` ("" when none)."""
        return urlsplit(self.endpoint).netloc.rpartition("@")[0]

    def _without_secrets(self, text: str) -> str:
        """`text` with the API key replaced by where it comes from, and the password of the
        base_url hidden: a proxy may echo the key it refused, and every message naming the URL
        reaches the user, the log and the session's error event."""
        if self._url_credentials:
            text = text.replace(f"{self._url_credentials}@", "***@")
        key = self.api_key
        if not key or len(key) < MIN_SECRET_LENGTH or key not in text:
            return text
        return text.replace(key, f"[the key in {self.api_key_env}]" if self.api_key_env else "[the API key]")

    def _hide_secrets_in(self, error: ProviderError) -> None:
        if error.args and isinstance(error.args[0], str):
            error.args = (self._without_secrets(error.args[0]), *error.args[1:])
        if error.url is not None:
            error.url = self._without_secrets(error.url)

    def _no_credit_text(self) -> str:
        whose = f"the API key in {self.api_key_env}" if self.api_key_env else "the API key"
        return (
            f"the account of {whose} has no credit left (waiting will not help): add credit or "
            "raise its spending limit with the provider, then retry the turn"
        )

    def _rejected_key_text(self) -> str:
        if self.api_key is None:
            return "no API key was sent; set spec.model.api_key_env in agent.yaml to the variable holding one"
        if self.api_key_env:
            return f"the API key in {self.api_key_env} was rejected"
        return "the API key was rejected"

    def _fix_key_hint(self) -> str:
        """What to do about a rejected key (the key is read once, when the provider is made)."""
        if self.api_key is None or not self.api_key_env:
            return ""
        return (
            f"; set {self.api_key_env} to a key the provider accepts and restart the server (it reads "
            "the key when it starts), then run the turn again"
        )

    def _unreachable(self, url: str, reason: str) -> ProviderUnavailable:
        return ProviderUnavailable(
            f"could not reach {self.name} at {url}: {reason}", provider=self.name, url=url
        )

    def _idle_timeout(self, url: str) -> StreamTimeout:
        return StreamTimeout(
            f"no data from {self.name} for {self.timeouts.idle:g} s ({url}): the model server stopped "
            "answering (a slow local model may need a longer spec.model.timeout in agent.yaml); retry the "
            "turn",
            provider=self.name,
            url=url,
        )


#: What providers say when the conversation is over the model's window: OpenAI and vLLM
#: ("maximum context length is 8192 tokens", code `context_length_exceeded`), Anthropic ("prompt
#: is too long: 210000 tokens > 200000 maximum"), llama.cpp ("exceeds the available context
#: size"), Gemini ("exceeds the maximum number of tokens allowed"), Mistral ("too large for model
#: with 32768 maximum context length").
_CONTEXT_OVERFLOW = re.compile(
    r"context[_ ]length|context window|context size|prompt is too long|maximum number of tokens"
    # Anthropic, when the input and max_tokens together are over the window
    r"|exceed context limit",
    re.IGNORECASE,
)
#: A 429 that no wait mends: OpenAI's `insufficient_quota` (the account's credit is spent).
_NO_CREDIT = re.compile(r"insufficient_quota")
_CONTEXT_LIMITS = (
    re.compile(r"maximum context length is (\d+)", re.IGNORECASE),
    re.compile(r"(\d+) maximum context length", re.IGNORECASE),
    re.compile(r"> ?(\d+) maximum", re.IGNORECASE),
    re.compile(r"exceed context limit: \d+ \+ \d+ > (\d+)", re.IGNORECASE),
    re.compile(r"maximum number of tokens allowed \((\d+)\)", re.IGNORECASE),
    re.compile(r"context (?:size|window|length) (?:is |of )?\(?(\d+)", re.IGNORECASE),
)


def _context_limit(body: str) -> int | None:
    """The model's window in tokens, when the provider's refusal names it."""
    for pattern in _CONTEXT_LIMITS:
        found = pattern.search(body)
        if found:
            return int(found.group(1))
    return None


def _gave_up(failure: _TransientFailure, attempts: int, seconds: float) -> str:
    """What a failure that lasted through every attempt means, and what to do about it."""
    tried = f"tried {attempts} times over {seconds:.1f} s"
    error = failure.error
    if isinstance(error, ProviderRateLimited):
        return (
            f"{tried}: the provider's rate limit for this API key or model is still reached; "
            "wait a minute, then retry the turn"
        )
    if isinstance(error, ProviderUnavailable) and error.status is None:
        return f"{tried}: is the model server running, and is spec.model.base_url in agent.yaml right?"
    return f"{tried}: the provider is failing or overloaded; retry the turn later"


def _wait_too_long(retry_after: float, most: float) -> str:
    """Why a rate limit was not waited out: the provider asked for longer than a turn waits."""
    until = time.strftime("%H:%M:%S UTC", time.gmtime(time.time() + retry_after))
    return (
        f"the provider asks to wait {retry_after:.0f} s (until {until}), longer than Duragent waits "
        f"within a turn ({most:g} s): retry the turn after that"
    )


def _joined_text(chunks: list[StreamChunk]) -> list[StreamChunk]:
    """Adjacent text deltas of one network read as one delta.

    A model that outpaces us packs many events into one read; relaying them as one piece costs
    one trip through the runtime and one SSE frame instead of one per event, and delays nothing
    (they all arrived together). A slow model's reads hold one event each and pass through as is.
    """
    if len(chunks) < 2:
        return chunks
    joined: list[StreamChunk] = []
    pending: list[str] = []
    for chunk in chunks:
        if isinstance(chunk, TextDelta):
            pending.append(chunk.text)
            continue
        if pending:
            joined.append(TextDelta("".join(pending)))
            pending = []
        joined.append(chunk)
    if pending:
        joined.append(TextDelta("".join(pending)))
    return joined


def server_message(body: str) -> str:
    """The human-readable message in an error body (`{"error": {"message": ...}}` and kin), or
    in a web page (its title), on one line."""
    try:
        data = json.loads(body)
    except ValueError:
        return _plain_message(body)
    return (_message_in(data) if isinstance(data, dict) else None) or _plain_message(body)


def _message_in(value: Any, depth: int = 0) -> str | None:
    """The message in a parsed error body: a string under `error`, `message`, `detail` or `msg`,
    however nested (Mistral's `message.detail`), or a FastAPI-style list of problems."""
    if isinstance(value, str):
        return value
    if depth > 3:
        return None
    if isinstance(value, list):
        problems = [_problem(item) for item in value]
        return "; ".join(p for p in problems if p) if problems and all(problems) else None
    if isinstance(value, dict):
        for key in ("error", "message", "detail", "msg"):
            found = _message_in(value.get(key), depth + 1)
            if found:
                return found
    return None


def _problem(item: Any) -> str | None:
    """One entry of a FastAPI-style list of problems as `where: what` (`body.temperature: ...`)."""
    if not isinstance(item, dict) or not isinstance(item.get("msg"), str):
        return None
    where = ".".join(str(part) for part in item.get("loc") or ())
    return f"{where}: {item['msg']}" if where else item["msg"]


_HTML_START = re.compile(r"\s*<(?:!doctype html|html|head|body|!--)", re.IGNORECASE)
_HTML_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_HTML_HIDDEN = re.compile(r"<(script|style)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_HTML_TAG = re.compile(r"<[^>]*>")


def _plain_message(body: str) -> str:
    """A body that is not JSON, as one line: a web page (a proxy's error page, a web app where the
    API was expected) by its title rather than its markup."""
    if _HTML_START.match(body):
        title = _HTML_TITLE.search(body)
        if title and title.group(1).strip():
            return f"an HTML page titled {' '.join(html.unescape(title.group(1)).split())[:200]!r}"
        words = " ".join(html.unescape(_HTML_TAG.sub(" ", _HTML_HIDDEN.sub(" ", body))).split())
        return f"an HTML page: {words[:200]}" if words else "an empty HTML page"
    return " ".join(body.split())[:300]


async def _tell_sent(session: aiohttp.ClientSession, context: Any, params: Any) -> None:
    """aiohttp trace hook: a request's headers are written; call its `sent` (its trace context)."""
    sent = context.trace_request_ctx
    if sent is not None:
        sent()
