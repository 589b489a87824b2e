"""Pure ASGI middleware: request ids, and the last line of defence for unhandled errors."""

from __future__ import annotations

import re
import secrets

import structlog
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentkeep.asgi import TrackingSend
from agentkeep.db.faults import classify
from agentkeep.errors import REQUEST_ID_STATE_KEY, database_unavailable_response, problem_response

REQUEST_ID_HEADER = "x-request-id"
# A client-supplied id is echoed into logs and headers, so only short, inert tokens are kept.
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._\-]{8,128}$")

logger = structlog.get_logger("agentkeep.http")


def new_request_id() -> str:
    return secrets.token_hex(16)


class RequestIdMiddleware:
    """Give every request an id (the client's when sane), bind it to logs, echo it back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        supplied = ""
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                supplied = value.decode("latin-1")
                break
        request_id = supplied if _SANE_REQUEST_ID.match(supplied) else new_request_id()
        scope.setdefault("state", {})[REQUEST_ID_STATE_KEY] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            await self.app(scope, receive, send_with_id)


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
