"""Error types that carry their HTTP status, and RFC 9457 problem+json rendering.

Services raise these; they never build HTTP responses. Every error answer, including the
ones Starlette and FastAPI produce themselves, goes out as `application/problem+json` with
the request id, and never with a stack trace.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from agentkeep.allowed_methods import allowed_methods
from agentkeep.db.faults import DatabaseFault, classify

logger = structlog.get_logger("agentkeep.errors")

PROBLEM_JSON = "application/problem+json"
REQUEST_ID_STATE_KEY = "request_id"


class AppError(Exception):
    """An error with a status code, a stable type slug and a safe, user-facing detail."""

    status_code: int = 400
    type_slug: str = "bad-request"
    title: str = "Bad request"

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.detail = detail or self.title
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})
        super().__init__(self.detail)


class NotFound(AppError):
    status_code = 404
    type_slug = "not-found"
    title = "Not found"


class Conflict(AppError):
    status_code = 409
    type_slug = "conflict"
    title = "Conflict"


class Unauthorized(AppError):
    status_code = 401
    type_slug = "unauthorized"
    title = "Not authenticated"


class Forbidden(AppError):
    status_code = 403
    type_slug = "forbidden"
    title = "Forbidden"


class PreconditionFailed(AppError):
    status_code = 412
    type_slug = "precondition-failed"
    title = "Precondition failed"


class InvalidInput(AppError):
    status_code = 422
    type_slug = "invalid-input"
    title = "Invalid input"


class ServiceUnavailable(AppError):
    status_code = 503
    type_slug = "service-unavailable"
    title = "Service unavailable"


def request_id_of(request: Request) -> str | None:
    value = request.scope.get("state", {}).get(REQUEST_ID_STATE_KEY)
    return value if isinstance(value, str) else None


def problem_body(
    status: int,
    *,
    title: str | None = None,
    detail: str | None = None,
    type_slug: str | None = None,
    instance: str | None = None,
    request_id: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    slug = type_slug or phrase.lower().replace(" ", "-").replace("'", "")
    body: dict[str, Any] = {
        "type": f"urn:agentkeep:problem:{slug}",
        "title": title or phrase,
        "status": status,
        "detail": detail or title or phrase,
    }
    if instance:
        body["instance"] = instance
    body["request_id"] = request_id
    if extra:
        body.update(extra)
    return body


def problem_response(
    request: Request,
    status: int,
    *,
    title: str | None = None,
    detail: str | None = None,
    type_slug: str | None = None,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> JSONResponse:
    body = problem_body(
        status,
        title=title,
        detail=detail,
        type_slug=type_slug,
        instance=request.url.path,
        request_id=request_id_of(request),
        extra=extra,
    )
    return JSONResponse(body, status_code=status, headers=dict(headers or {}), media_type=PROBLEM_JSON)


def _validation_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    # Only location, message and type: echoing the input back could reflect secrets
    # (a password that failed a rule) into logs and proxies.
    return [
        {
            "loc": [str(part) for part in error.get("loc", ())],
            "msg": str(error.get("msg", "")),
            "type": str(error.get("type", "")),
        }
        for error in errors
    ]


async def _app_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return problem_response(
        request,
        exc.status_code,
        title=exc.title,
        detail=exc.detail,
        type_slug=exc.type_slug,
        headers=exc.headers,
        extra=exc.extra,
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else None
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(allowed_methods(request.app, request.url.path))
    return problem_response(request, exc.status_code, detail=detail, headers=headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return problem_response(
        request,
        422,
        title="Invalid input",
        detail="The request did not match the expected schema; see `errors`.",
        type_slug="invalid-input",
        extra={"errors": _validation_errors(exc.errors())},
    )


def database_unavailable_response(request: Request, fault: DatabaseFault) -> JSONResponse:
    """503 for a database that cannot serve now (down, restarting, frozen, saturated)."""
    # Only the kind is logged: driver messages can quote SQL and its parameters.
    logger.warning("database_unavailable", fault=fault.kind, path=request.url.path)
    return problem_response(
        request,
        503,
        title="Database unavailable",
        detail="The database cannot serve this request right now; retry shortly.",
        type_slug="database-unavailable",
        headers={"Retry-After": str(fault.retry_after)},
    )


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    fault = classify(exc)
    if fault is not None:
        return database_unavailable_response(request, fault)
    # No outage but a bug (an undefined table, a bad statement): the last-resort middleware
    # logs it with the request id and answers a bare 500.
    raise exc


def install_error_handlers(app: FastAPI) -> None:
    # Every database error is classified by what it means (agentkeep.db.faults), whatever its
    # class: asyncpg reports a restart as a plain DBAPIError, a connect timeout as a bare
    # TimeoutError. Failures that escape these handlers (wrapped in an exception group, say)
    # are classified again by the last-resort middleware.
    for database_error in (DBAPIError, SQLAlchemyTimeoutError, DisconnectionError, OSError):
        app.add_exception_handler(database_error, _database_error)
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
