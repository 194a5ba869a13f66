"""Errors a provider raises, each with text a user can act on."""

from __future__ import annotations

from duragent.errors import ConfigError, DuragentError


class ProviderError(DuragentError):
    """The provider refused or failed a request; the text names the provider and, if known, the URL."""

    def __init__(self, message: str, *, provider: str, status: int | None = None, url: str | None = None):
        super().__init__(message)
        self.provider = provider
        self.status = status
        self.url = url
        #: Whether `explain` already said what to do.
        self.explained = False

    def explain(self, hint: str) -> None:
        """Add what happened next or what to do (`...: tried 4 times ...`) to the message."""
        self.args = (f"{self.args[0]}; {hint}" if self.args else hint, *self.args[1:])
        self.explained = True


class ProviderAuthError(ProviderError):
    """The provider rejected the credentials (HTTP 401 or 403)."""


class ProviderRateLimited(ProviderError):
    """HTTP 429 on every attempt; `retry_after` is the last wait the provider asked for, if any."""

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        url: str | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message, provider=provider, status=429, url=url)
        self.retry_after = retry_after


class ProviderUnavailable(ProviderError):
    """The provider could not be reached, or answered 5xx, on every attempt."""


class ContextTooLong(ProviderError):
    """The provider refused the request because the conversation is over the model's context
    window; `limit` is the window in tokens when the provider's message says it."""

    def __init__(self, message: str, *, provider: str, status: int, url: str | None, limit: int | None):
        super().__init__(message, provider=provider, status=status, url=url)
        self.limit = limit


class StreamError(ProviderError):
    """The reply stream broke after it started: malformed chunk, dropped connection, error event.

    Raised from the stream iterator; the caller turns it into an error event and the session
    stays usable.
    """


class TransientStreamError(StreamError):
    """A stream failure the next attempt may well not meet: an error event standing for a 5xx
    (Anthropic's `overloaded_error`), or a body that ended before the reply did. Retried like a
    5xx or a dropped connection when nothing of the reply came before it."""


class StreamTimeout(StreamError):
    """No bytes arrived from the provider for longer than the idle timeout."""


class MissingApiKey(ConfigError):
    """The provider needs an API key and the environment variable that should hold it is unset."""

    def __init__(self, provider: str, variable: str):
        super().__init__(
            f"the {provider} provider needs an API key: set the environment variable {variable} "
            f"(or point spec.model.api_key_env in agent.yaml at the variable that holds it)"
        )
        self.provider = provider
        self.variable = variable


class UnusableApiKey(ConfigError):
    """The variable holding the API key has a control character inside the key, which no HTTP
    header may carry (the value is never shown)."""

    def __init__(self, provider: str, variable: str):
        super().__init__(
            f"the {provider} provider cannot send the API key in {variable}: the value holds a line "
            f"break or other control character inside it; set {variable} to the key alone"
        )
        self.provider = provider
        self.variable = variable


class UnknownProvider(ConfigError):
    """agent.yaml names a provider Duragent does not have."""

    def __init__(self, provider: str, known: tuple[str, ...]):
        super().__init__(f"unknown model provider {provider!r}; known providers: {', '.join(known)}")
        self.provider = provider
