"""Refuse request bodies over MAX_BODY_BYTES with a 413, without reading them whole."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentkeep.asgi import TrackingSend
from agentkeep.errors import problem_response


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, detail=f"The request body exceeds {limit} bytes.")


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            Request(scope), 413, detail=f"The request body exceeds {self.max_bytes} bytes."
        )
        await response(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        declared = headers.get("content-length")
        if declared is None and "transfer-encoding" not in headers:
            await self.app(scope, receive, send)  # no body: nothing to count
            return
        if declared is not None:
            if not declared.isdigit():
                response = problem_response(Request(scope), 400, detail="Invalid Content-Length.")
                await response(scope, receive, send)
                return
            if int(declared) > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # A chunked body that outgrew the limit: stop reading here.
                    raise BodyTooLarge(self.max_bytes)
            return message

        tracking_send = TrackingSend(send)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if tracking_send.started:
                raise
            await self._refuse(scope, receive, send)
