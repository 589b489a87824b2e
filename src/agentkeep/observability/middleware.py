"""Pure ASGI middleware: what every request gets, in one layer, and the last line of
defence for unhandled errors."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable

import structlog
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentkeep.asgi import TrackingSend
from agentkeep.db.faults import classify
from agentkeep.errors import REQUEST_ID_STATE_KEY, database_unavailable_response, problem_response
from agentkeep.observability.metrics import Metrics, route_template
from agentkeep.security.headers import (
    CONSOLE_CSP,
    CONSOLE_MARKER,
    CONSOLE_REFERRER,
    DOCS_CSP,
    DOCS_PATHS,
    REPLACED_HEADERS,
    security_headers,
)

REQUEST_ID_HEADER = b"x-request-id"
# Headers this layer sets: a response's own value of one of them is dropped.
REPLACED = REPLACED_HEADERS | {REQUEST_ID_HEADER, CONSOLE_MARKER}
# A client-supplied id is echoed into logs and headers, so only short, inert tokens are kept.
_SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._\-]{8,128}")

logger = structlog.get_logger("agentkeep.http")
access_logger = structlog.get_logger("agentkeep.access")


def new_request_id() -> str:
    return secrets.token_hex(16)


def request_id_for(supplied: bytes) -> str:
    """The client's X-Request-ID when it is a sane token, else a new id."""
    return supplied.decode("ascii") if _SANE_REQUEST_ID.fullmatch(supplied) else new_request_id()


class RequestMiddleware:
    """Every request, in one layer (each layer costs a call and a wrapped `send`):

    - an id (the client's when sane), bound to its log lines and echoed in `X-Request-ID`;
    - the security headers (security/headers.py), on every answer;
    - its count and latency by route template (never the raw path: no ids), and its access
      line: one structured event per request, carrying the request id (and the user and
      organization once the auth dependency has bound them).
    """

    def __init__(self, app: ASGIApp, metrics_of: Callable[[], Metrics | None], *, hsts: bool) -> None:
        self.app = app
        self.metrics_of = metrics_of
        self.api_headers = security_headers(hsts=hsts)
        self.docs_headers = security_headers(hsts=hsts, csp=DOCS_CSP)
        self.console_headers = security_headers(hsts=hsts, csp=CONSOLE_CSP, referrer=CONSOLE_REFERRER)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        supplied = b""
        for name, value in scope["headers"]:
            if name == REQUEST_ID_HEADER:
                supplied = value
                break
        request_id = request_id_for(supplied)
        scope.setdefault("state", {})[REQUEST_ID_STATE_KEY] = request_id
        request_id_header = (REQUEST_ID_HEADER, request_id.encode())
        stamped = [
            *(self.docs_headers if scope["path"] in DOCS_PATHS else self.api_headers),
            request_id_header,
        ]
        status = 500
        started = time.perf_counter()

        async def stamping_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                own = message.get("headers", ())
                console = any(header[0] == CONSOLE_MARKER for header in own)
                message["headers"] = [
                    *(header for header in own if header[0].lower() not in REPLACED),
                    *((*self.console_headers, request_id_header) if console else stamped),
                ]
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, stamping_send)
            finally:
                self._record(scope, status, time.perf_counter() - started)

    def _record(self, scope: Scope, status: int, elapsed: float) -> None:
        metrics = self.metrics_of()
        route = route_template(scope)
        method: str = scope["method"]
        if metrics is not None:
            metrics.http_requests.labels(route, method, str(status)).inc()
            metrics.http_latency.labels(route, method).observe(elapsed)
        access_logger.info(
            "request", method=method, route=route, status=status, duration_ms=round(elapsed * 1000, 2)
        )


class UnhandledErrorMiddleware:
    """Answer any uncaught exception with a bare problem+json 500 and log it with the id.

    It sits inside CORS and the request-id middleware so that even a 500 carries their
    headers; the client never sees a stack trace or an exception message.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tracking_send = TrackingSend(send)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            fault = classify(exc)
            if fault is not None and not tracking_send.started:
                # A database outage that reached no handler (raised inside a task group, say).
                await database_unavailable_response(Request(scope), fault)(scope, receive, send)
                return
            logger.exception("unhandled_error", method=scope.get("method"), path=scope.get("path"))
            if tracking_send.started:
                raise
            response = problem_response(
                Request(scope),
                500,
                detail="An unexpected error occurred. Quote the request id when reporting it.",
            )
            await response(scope, receive, send)
