"""Bound the requests one process works on at once (MAX_REQUESTS_IN_FLIGHT).

Beyond the bound a request is answered at once with 503 problem+json and `Retry-After`,
instead of queueing behind the others: admitted requests keep their latency, and a client
(or a load balancer) learns within a millisecond that it should retry, here or elsewhere.

A slot covers the work of producing an answer, not the client's speed:

- a request with a body takes its slot once the whole body has arrived, so slow uploads
  cannot fill the bound (a slow upload holds a connection, as it did without the bound);
- the slot is given back when the last piece of the answer is handed to the server, so a
  slow reader of a large answer holds no slot either;
- an event stream (`text/event-stream`) gives its slot back as soon as its headers are sent:
  opening it is work like any request, the idle connection that follows is not;
- probes and `/metrics` never take a slot and are never refused: they must stay fast
  precisely when the process is overloaded.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

import structlog
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentkeep.errors import problem_response

logger = structlog.get_logger("agentkeep.overload")

NEVER_REFUSED = frozenset({"/health", "/health/live", "/health/ready", "/metrics"})
RETRY_AFTER_SECONDS = 1
LOG_INTERVAL_SECONDS = 1.0
OVERLOADED_SLUG = "overloaded"


class InFlightLimit:
    """The requests this process is working on, and the bound beyond which it refuses more.

    One per app, shared by the middleware (which Starlette builds lazily). The event loop runs
    one request's code at a time, so the count needs no lock.
    """

    def __init__(self, limit: int, on_refusal: Callable[[], None]) -> None:
        self.limit = limit
        self.count = 0
        self._on_refusal = on_refusal
        self._refused_unlogged = 0
        self._logged_at = float("-inf")

    @property
    def full(self) -> bool:
        return self.count >= self.limit

    def admit(self) -> bool:
        if self.full:
            return False
        self.count += 1
        return True

    def release(self) -> None:
        self.count -= 1

    def refused(self) -> None:
        """Count a refusal; log at most one line a second while refusing, never one each."""
        self._on_refusal()
        self._refused_unlogged += 1
        now = time.monotonic()
        if now - self._logged_at >= LOG_INTERVAL_SECONDS:
            logger.warning(
                "overloaded", in_flight=self.count, limit=self.limit, refused=self._refused_unlogged
            )
            self._refused_unlogged = 0
            self._logged_at = now


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _has_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if (name == b"content-length" and value.strip() not in (b"", b"0")) or name == b"transfer-encoding":
            return True
    return False


def _is_event_stream(start: Message) -> bool:
    return any(
        name.lower() == b"content-type" and value.lower().startswith(b"text/event-stream")
        for name, value in start.get("headers", ())
    )


async def _received_whole(receive: Receive) -> tuple[Receive, bool]:
    """Read the request body to its end (BodyLimitMiddleware's receive refuses an oversized
    one as it arrives), to be replayed to the application; False when the client left first."""
    messages: deque[Message] = deque()
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            break

    complete = messages[-1]["type"] == "http.request"

    async def replay() -> Message:
        return messages.popleft() if messages else await receive()

    return replay, complete


class InFlightLimitMiddleware:
    def __init__(self, app: ASGIApp, limit: InFlightLimit) -> None:
        self.app = app
        self.limit = limit

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.limit.refused()
        response = problem_response(
            Request(scope),
            503,
            title="Overloaded",
            detail="The server is handling as many requests as it accepts; retry after Retry-After seconds.",
            type_slug=OVERLOADED_SLUG,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
        await response(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _route_path(scope) in NEVER_REFUSED:
            await self.app(scope, receive, send)
            return
        limit = self.limit
        if limit.full:  # refused before its body is read: a refusal costs next to nothing
            await self._refuse(scope, receive, send)
            return
        if _has_body(scope):
            receive, complete = await _received_whole(receive)
            if not complete:
                return  # the client left before its body arrived: nobody to answer
        if not limit.admit():
            await self._refuse(scope, receive, send)
            return
        held = True

        def release() -> None:
            nonlocal held
            if held:
                held = False
                limit.release()

        async def releasing_send(message: Message) -> None:
            if held and (
                (message["type"] == "http.response.start" and _is_event_stream(message))
                or (message["type"] == "http.response.body" and not message.get("more_body", False))
            ):
                release()
            await send(message)

        try:
            await self.app(scope, receive, releasing_send)
        finally:
            release()
