"""When and how long to wait before trying a failed model call again."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter; `Retry-After` from the server wins when present.

    `max_retry_after` caps how long a server may make us wait: a longer `Retry-After` fails the
    call at once rather than silently stalling a conversation.
    """

    max_attempts: int = 4
    initial_delay: float = 0.5
    max_delay: float = 20.0
    max_retry_after: float = 60.0

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based): uniform in [0, cap]."""
        cap = min(self.max_delay, self.initial_delay * 2 ** (attempt - 1))
        return (rng or random).uniform(0, cap)


def is_retryable_status(status: int) -> bool:
    """Worth another attempt: request timeout, rate limited, or the server (or a proxy) failed."""
    return status in (408, 429) or status >= 500


#: Headers that say how long to wait, the most precise first: OpenAI's `retry-after-ms`, the
#: standard `Retry-After`, then the names a proxy such as LiteLLM gives the upstream's headers.
RETRY_AFTER_HEADERS = (
    ("retry-after-ms", 0.001),
    ("retry-after", 1.0),
    ("llm_provider-retry-after-ms", 0.001),
    ("llm_provider-retry-after", 1.0),
)


def retry_after_from(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds an error response asks us to wait (`RETRY_AFTER_HEADERS`), or None.

    `headers` must look names up case-insensitively (aiohttp's headers do).
    """
    for name, scale in RETRY_AFTER_HEADERS:
        value = headers.get(name)
        if value is None:
            continue
        if scale != 1.0:
            try:
                return max(0.0, float(value.strip()) * scale)
            except ValueError:
                continue
        seconds = parse_retry_after(value, now)
        if seconds is not None:
            return seconds
    return None


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds the server asked us to wait: `Retry-After` as delta-seconds or an HTTP date."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
