"""Every HTTP error as RFC 7807 `application/problem+json`, produced in exactly one place.

Handlers raise library exceptions (`NotFound`, `UsageError`, pydantic's `ValidationError`...)
or `HttpProblem`; the middleware here maps each to a status and a problem document
`{type, title, status, detail, instance, errors?}`. aiohttp's own 404/405/413 become problems too.
"""

from __future__ import annotations

import itertools
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, cast

from aiohttp import web
from aiohttp.typedefs import Middleware
from pydantic import BaseModel, ValidationError

from duragent.errors import ConfigError, DuragentError, InvalidName, NotFound, ServiceUnavailable, UsageError
from duragent.runtime.approvals import DuplicateApproval
from duragent.sessions.live import AwaitingApproval, NothingToRetry, ServerClosing, SessionEnded
from duragent.stores.base import SessionLocked
from duragent.validation import nearest_hint

log = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:duragent:problem:"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: The longest request line (method, target, version) and header line served, as aiohttp's defaults.
MAX_REQUEST_LINE = 8190
#: What aiohttp itself is told to accept (`handler_args` of the app): lines between the two limits
#: get a problem+json 414 or 431 from this module; aiohttp's own refusal above it is plain text.
PARSER_LINE_LIMIT = 64 * 1024
#: Set on an error response whose own JSON body must reach the client as is (the /readyz report).
KEEP_BODY = web.ResponseKey("duragent_keep_body", bool)


@dataclass(frozen=True)
class FieldError:
    """One invalid field of a request: its dotted path (`body.content`, `query.limit`) and why."""

    field: str
    message: str


@dataclass
class HttpProblem(Exception):
    """An error a handler reports directly with its status (the library's errors map by class)."""

    status: int
    detail: str
    errors: Sequence[FieldError] = field(default_factory=tuple)
    type_name: str | None = None
    #: Headers the answer carries (`X-Should-Retry` on a turn that must not be sent again, say).
    headers: Mapping[str, str] | None = None
    #: RFC 7807 extension members of the body (a failed turn's `retryable`).
    extensions: Mapping[str, Any] | None = None

    def __str__(self) -> str:
        return self.detail


def problem_response(
    request: web.Request,
    status: int,
    detail: str,
    *,
    errors: Sequence[FieldError] = (),
    type_name: str | None = None,
    headers: dict[str, str] | None = None,
    extensions: Mapping[str, Any] | None = None,
) -> web.Response:
    """The problem+json response for `status` (also for statuses `http.HTTPStatus` lacks, like 499)."""
    phrase = status_phrase(status)
    body: dict[str, Any] = {
        "type": TYPE_PREFIX + (type_name or phrase.lower().replace(" ", "-").replace("'", "")),
        "title": phrase,
        "status": status,
        "detail": detail,
        "instance": request.path,
    }
    if errors:
        body["errors"] = [{"field": e.field, "message": e.message} for e in errors]
    if extensions:
        body.update({key: value for key, value in extensions.items() if key not in body})
    return web.Response(
        status=status,
        reason=phrase,
        text=json.dumps(body),
        content_type=PROBLEM_CONTENT_TYPE,
        headers=headers,
    )


#: Statuses we send that `http.HTTPStatus` does not know (nginx's 499 for a client that hung up).
_EXTRA_PHRASES = {499: "Client Closed Request"}
#: The status of a failed turn by its `error` event's code, where it is not the model's or a
#: tool's failure (502): another worker has the session or wrote to it (send the message again),
#: the data directory refuses writes (nothing was stored).
_TURN_ERROR_STATUS = {"conflict": 409, "storage": 503}


def turn_error_status(code: str) -> int:
    """The HTTP status that answers a turn whose `error` event carries `code`."""
    return _TURN_ERROR_STATUS.get(code, 502)


def status_phrase(status: int) -> str:
    """The reason phrase of `status`; unknown statuses get a generic one instead of an error."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return _EXTRA_PHRASES.get(status, f"Status {status}")


def validation_errors(
    exc: ValidationError, prefix: str, model: type[BaseModel] | None = None
) -> list[FieldError]:
    """pydantic errors as field paths under `prefix` (`body`, `query`); an unknown top-level
    field of `model` gets the nearest known one (`query.runing: … (did you mean 'running'?)`)."""
    found = []
    for error in exc.errors(include_url=False):
        path = ".".join(str(part) for part in (prefix, *error["loc"]))
        # (a check of our own raised ValueError: its message is the whole story)
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden" and model is not None and len(error["loc"]) == 1:
            message += _nearest_field(model, str(error["loc"][0]))
        found.append(FieldError(path, message))
    return found


def _nearest_field(model: type[BaseModel], given: str) -> str:
    """` (did you mean 'running'?)` when `given` is a near miss of one of `model`'s fields."""
    return nearest_hint(given, [info.alias or name for name, info in model.model_fields.items()])


def body_problem(exc: ValidationError, model: type[BaseModel] | None = None) -> HttpProblem:
    """The 400 for a request body `model` refused, each error at its `body.<field>`."""
    errors = validation_errors(exc, "body", model)
    return HttpProblem(400, invalid("the request", errors), errors, "validation")


def invalid(what: str, errors: Sequence[FieldError]) -> str:
    """The detail of a 400 for `errors`: the first one in words (clients that show only the
    detail, as the CLI does, still say what is wrong), and how many more the list holds."""
    if not errors:
        return f"{what} is invalid"
    first = errors[0]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{what} is invalid: {first.field}: {first.message}{more}"


def _status_of(exc: DuragentError) -> int:
    from duragent.cluster.ownership import OwnershipLost

    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, OwnershipLost):
        return 503  # this worker cannot serve sessions any more; another can
    if isinstance(exc, SessionEnded | NothingToRetry | AwaitingApproval | DuplicateApproval | SessionLocked):
        return 409
    if isinstance(exc, ServerClosing | ServiceUnavailable):
        return 503  # (PostgreSQL or S3 away or refusing is the store's trouble, not a bug here)
    if isinstance(exc, UsageError | InvalidName | ConfigError):
        return 400
    return 500


def problem_of(exc: Exception) -> HttpProblem | None:
    """The problem `error_problem` answers for `exc`, or None for an unexpected error (a bug)."""
    if isinstance(exc, HttpProblem):
        return exc
    if isinstance(exc, ValidationError):
        return body_problem(exc)
    if isinstance(exc, DuragentError):
        return HttpProblem(_status_of(exc), str(exc))
    return None


def error_problem(request: web.Request, exc: Exception) -> web.Response | None:
    """The problem+json response for an error raised while handling `request`.

    None for what is no error to answer: a redirect (`HTTPFound`), a client that hung up, a
    timeout; the caller re-raises those.
    """
    if isinstance(exc, HttpProblem):
        headers = dict(exc.headers) if exc.headers else None
        return problem_response(
            request,
            exc.status,
            exc.detail,
            errors=exc.errors,
            type_name=exc.type_name,
            headers=headers,
            extensions=exc.extensions,
        )
    if isinstance(exc, ValidationError):
        errors = validation_errors(exc, "body")
        return problem_response(
            request, 400, invalid("the request", errors), errors=errors, type_name="validation"
        )
    if isinstance(exc, DuragentError):
        status = _status_of(exc)
        if status == 503:
            # (a service away, the disk full, the server closing: the message says what to do)
            log.warning("%s %s answered 503: %s", request.method, request.path, exc)
        elif status >= 500:
            log.error("%s %s failed: %s", request.method, request.path, exc)
        return problem_response(request, status, str(exc))
    if isinstance(exc, web.HTTPException):
        return None if exc.status < 400 else _from_http_exception(request, exc)
    unreachable = _database_unreachable(exc)
    if unreachable is not None:
        log.warning(
            "%s %s answered 503: %s (check that PostgreSQL is running and reachable from this worker)",
            request.method,
            request.path,
            unreachable,
        )
        return problem_response(request, 503, unreachable, headers={"Retry-After": RETRY_AFTER_SECONDS})
    if isinstance(exc, ConnectionResetError | TimeoutError):
        return None
    # The one place an unexpected error becomes a response: logged with its traceback.
    log.error("%s %s failed", request.method, request.path, exc_info=exc)
    return problem_response(request, 500, "internal server error (see the server log)")


#: What a 503 for a database that is away asks a client to wait before trying again.
RETRY_AFTER_SECONDS = "5"


def _database_unreachable(exc: Exception) -> str | None:
    """What to tell a client when `exc` is PostgreSQL being away (down, restarting, a dropped
    connection, no connection left): a 503 worth retrying, not a 500 (no bug of the server's)."""
    asyncpg = sys.modules.get("asyncpg")  # (loaded only when a store uses PostgreSQL)
    if asyncpg is None:
        return None
    errors = asyncpg.exceptions
    away = (errors.PostgresConnectionError, errors.OperatorInterventionError, errors.TooManyConnectionsError)
    if isinstance(exc, away) or (isinstance(exc, OSError) and _from_asyncpg(exc)):
        return f"the database is not reachable ({type(exc).__name__}: {exc}); try again shortly"
    return None


def _from_asyncpg(exc: BaseException) -> bool:
    """Whether `exc` was raised inside asyncpg (a refused or reset connection to PostgreSQL)."""
    traceback = exc.__traceback__
    while traceback is not None:
        if traceback.tb_frame.f_globals.get("__name__", "").startswith("asyncpg"):
            return True
        traceback = traceback.tb_next
    return False


def as_problem(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """`response`, or a problem in its place when it is an error reply in another format."""
    if (
        isinstance(response, web.Response)
        and response.status >= 400
        and not _is_problem(response)
        and not response.get(KEEP_BODY)
    ):
        return problem_response(request, response.status, response.text or status_phrase(response.status))
    return response


@web.middleware
async def _problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every error raised while handling a request into a problem+json response."""
    response: web.StreamResponse | None = too_long(request)
    if response is not None:
        return response
    try:
        response = await handler(request)
    except Exception as exc:
        response = error_problem(request, exc)
        if response is None:
            raise
    return as_problem(request, response)


def too_long(request: web.Request) -> web.Response | None:
    """414 for a request target, 431 for a header line, longer than MAX_REQUEST_LINE; else None."""
    line = len(request.method) + len(request.raw_path) + len(" HTTP/1.1") + 1
    if line > MAX_REQUEST_LINE:
        detail = f"the request line is {line} bytes long; at most {MAX_REQUEST_LINE} are served"
        return problem_response(request, 414, detail)
    raw_headers = request.raw_headers
    if sum(map(len, itertools.chain.from_iterable(raw_headers))) + 2 * len(raw_headers) <= MAX_REQUEST_LINE:
        return None  # (all header lines together no longer than one may be: the usual request)
    for name, value in raw_headers:
        if len(name) + len(value) + 2 > MAX_REQUEST_LINE:
            header = name.decode("latin-1")
            return problem_response(request, 431, f"header {header} is longer than {MAX_REQUEST_LINE} bytes")
    return None


#: Errors into problem+json as a middleware of its own (the server's `front_door` does this and more).
problem_middleware = cast(Middleware, _problem_middleware)


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> web.Response:
    detail = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
    headers = {}
    if isinstance(exc, web.HTTPMethodNotAllowed):
        headers["Allow"] = ", ".join(sorted(exc.allowed_methods))
        detail = f"{request.method} is not allowed here; allowed: {headers['Allow']}"
    elif exc.status == 404:
        detail = f"no route {request.method} {request.path}"
    elif exc.status == 413:
        from duragent.server.app import MAX_BODY_BYTES  # (app imports this module)

        detail = f"the request body is too large (at most {MAX_BODY_BYTES // 1024**2} MiB)"
    return problem_response(request, exc.status, detail, headers=headers or None)


def _is_problem(response: web.Response) -> bool:
    return response.content_type == PROBLEM_CONTENT_TYPE
