"""How errors become HTTP answers: the one table from exception class to status code.

Every error answer has Qdrant's shape ``{"status": {"error": "..."}, "time": seconds}``.
A class maps to the status of the nearest entry in its method resolution order, so a new
subclass of, say, ``ValidationError`` is a 400 without touching this table. An exception
outside the table is a bug: it is logged with its traceback and answered 500.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from infra.errors import InfrastructureError, VectorizerError
from producers.errors import PublishFailed, WriteRejected
from projections.errors import (
    CollectionExists,
    CollectionNotFound,
    ConsistencyTimeout,
    InvalidFilter,
    PointNotFound,
    Rejected,
)
from schemas.errors import SchemaError

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 1


class ApiError(VectorizerError):
    """Base class of errors raised by the HTTP layer itself."""


class BadRequest(ApiError, ValueError):
    """The request is malformed; the message starts with the offending field (``points[3].id: ...``)."""


class Unprocessable(ApiError, ValueError):
    """A well-formed value that Qdrant's validation rejects (its 422); the message is Qdrant's
    ``Validation error in JSON body: [field: reason]``."""


class Unauthorized(ApiError, PermissionError):
    """The ``api-key`` header is missing or wrong."""


class Forbidden(ApiError, PermissionError):
    """The key is valid but does not allow this operation (a write with the read-only key)."""


class NotFound(ApiError, LookupError):
    """What the request names does not exist (a snapshot); the message is Qdrant's ``Not found: ...``."""


class PayloadTooLarge(ApiError, ValueError):
    """The request body exceeds ``Settings.max_body_bytes``."""


class NotReady(ApiError, RuntimeError):
    """Recovery has not caught up yet, or the server has no connection to Kafka yet."""


class Busy(ApiError, RuntimeError):
    """The same long operation (a verify, a workspace sync) is already running on this server."""


STATUS: dict[type[BaseException], int] = {
    BadRequest: 400,
    SchemaError: 400,  # ValidationError and its subclasses, InvalidPointId, decoding errors
    InvalidFilter: 400,
    RequestValidationError: 400,
    Unprocessable: 422,
    Unauthorized: 401,
    Forbidden: 403,
    CollectionNotFound: 404,
    PointNotFound: 404,
    NotFound: 404,
    CollectionExists: 409,
    Busy: 409,
    WriteRejected: 400,  # its own ``status`` (404, 409, 403, 400) wins: see status_for
    Rejected: 400,  # the same: a projection's check made before publishing
    PayloadTooLarge: 413,
    NotReady: 503,
    PublishFailed: 503,
    InfrastructureError: 503,
    ConsistencyTimeout: 504,
}


def status_for(exc: BaseException) -> int | None:
    """The status of the nearest class of ``exc`` in :data:`STATUS`, or ``None`` (a bug).

    A :class:`WriteRejected` (and a :class:`Rejected` raised by a projection check the API runs
    before publishing) carries the status of the mistake the projection found, so it answers that.
    """
    if isinstance(exc, (WriteRejected, Rejected)) and 400 <= exc.status < 600:
        return exc.status
    for cls in type(exc).__mro__:
        status = STATUS.get(cls)
        if status is not None:
            return status
    return None


def error_response(status: int, message: str, started: float | None = None) -> JSONResponse:
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 503 else None
    elapsed = 0.0 if started is None else time.perf_counter() - started
    # A message may quote the request (a field name): one with a lone surrogate has no UTF-8 form.
    message = message.encode("utf-8", "backslashreplace").decode("utf-8")
    return JSONResponse({"status": {"error": message}, "time": elapsed}, status_code=status, headers=headers)


def response_for(exc: BaseException, started: float | None = None) -> JSONResponse:
    """The answer for ``exc``; unknown exceptions are logged with their traceback and answer 500."""
    if isinstance(exc, RequestValidationError):
        return error_response(*_request_validation(exc), started)
    status = status_for(exc)
    if status is None:
        log.error("unexpected %s while serving a request", type(exc).__name__, exc_info=exc)
        return error_response(500, f"internal error ({type(exc).__name__}); see the server log", started)
    return error_response(status, _message(exc), started)


def _message(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


_PLACES = {"query": "query parameters", "path": "path parameters", "body": "JSON body", "header": "headers"}
_RANGES = {"greater_than_equal": ("ge", "must be {} or larger"), "greater_than": ("gt", "must be larger than {}"),
           "less_than_equal": ("le", "must be {} or smaller"), "less_than": ("lt", "must be smaller than {}")}


def _request_validation(exc: RequestValidationError) -> tuple[int, str]:
    """FastAPI's parameter checks as Qdrant's actix validation answers them: a number out of its
    declared range is a 422 ``Validation error in query parameters: [field: value V invalid, must
    be ...]``; a value that does not parse (or a negative one, which Qdrant's unsigned fields cannot
    hold) is a 400 ``Deserialize error in query parameters: field: reason``."""
    errors = [e for e in exc.errors() if isinstance(e, dict)][:5]
    if not errors:
        return 400, "invalid request"
    place = _PLACES.get(str(errors[0].get("loc", ("query",))[0]), "request")
    ranges = [_range_problem(e) for e in errors]
    if all(r is not None for r in ranges):
        return 422, f"Validation error in {place}: [{'; '.join(r for r in ranges if r is not None)}]"
    return 400, f"Deserialize error in {place}: " + "; ".join(f"{_field(e)}: {e.get('msg', 'invalid')}"
                                                              for e in errors)


def _range_problem(error: dict[str, Any]) -> str | None:
    """``field: value V invalid, must be ...`` for a well-formed non-negative number out of range."""
    bound = _RANGES.get(str(error.get("type")))
    ctx = error.get("ctx") or {}
    if bound is None or bound[0] not in ctx:
        return None
    try:
        value = float(error.get("input"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if value < 0:
        return None
    limit = ctx[bound[0]]
    limit = int(limit) if isinstance(limit, float) and limit.is_integer() else limit
    return f"{_field(error)}: value {error.get('input')} invalid, {bound[1].format(limit)}"


def _field(error: dict[str, Any]) -> str:
    loc = error.get("loc", ())
    return ".".join(str(part) for part in loc if part not in _PLACES) or "request"


def _started(request: Request) -> float | None:
    return getattr(request.state, "started", None)


async def handle_error(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI exception handler for every exception class (the catch-all included)."""
    return response_for(exc, _started(request))


async def handle_http_error(request: Request, exc: HTTPException) -> JSONResponse:
    """Starlette's own errors (unknown route 404, 405) in Qdrant's envelope."""
    response = error_response(exc.status_code, str(exc.detail), _started(request))
    if exc.headers:
        response.headers.update(exc.headers)
    return response
