"""Bound the requests one process works on at once (MAX_REQUESTS_IN_FLIGHT).

Beyond the bound a request is answered at once with 503 problem+json and `Retry-After`,
instead of queueing behind the others: admitted requests keep their latency, and a client
(or a load balancer) learns at once that it should retry, here or elsewhere.

The gate is the outermost layer of the application (around Starlette's own error
middleware), so a refusal runs through no other middleware, builds no Request, writes no log
line: its answer is pre-encoded, with the request id, the security headers and the CORS
headers an allowed browser origin needs filled in. Under overload refusals are most of the
requests a process answers; what each one costs is taken from the admitted ones.

A slot covers the work of producing an answer, not the client's speed:

- a request with a body takes its slot once the whole body has arrived, so slow uploads
  cannot fill the bound (a slow upload holds a connection, as it did without the bound); a
  body over MAX_BODY_BYTES is not buffered here but handed on for the body limit to refuse;
- the slot is given back when the last piece of the answer is handed to the server, so a
  slow reader of a large answer holds no slot either;
- an event stream (`text/event-stream`) gives its slot back as soon as its headers are sent:
  opening it is work like any request, the idle connection that follows is not;
- probes, `/metrics` and CORS preflights never take a slot and are never refused: the probes
  must stay fast precisely when the process is overloaded, and a preflight is answered by
  the CORS layer without reaching a route.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable, Sequence

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentkeep.errors import PROBLEM_JSON, problem_body

logger = structlog.get_logger("agentkeep.overload")

NEVER_REFUSED = frozenset({"/health", "/health/live", "/health/ready", "/metrics"})
RETRY_AFTER_SECONDS = 1
LOG_INTERVAL_SECONDS = 1.0
OVERLOADED_SLUG = "overloaded"
OVERLOADED_DETAIL = "The server is handling as many requests as it accepts; retry after Retry-After seconds."
# Between the two: the request path (JSON-encoded) and the request id (a sane token).
_INSTANCE_MARK = "\x00instance\x00"
_REQUEST_ID_MARK = "\x00request_id\x00"


class InFlightLimit:
    """The requests this process is working on, and the bound beyond which it refuses more.

    One per app, shared by the gate. The event loop runs one request's code at a time, so
    the count needs no lock.
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
        if self.count >= self.limit:
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


def _encoded_body_parts() -> tuple[bytes, bytes, bytes]:
    """The refusal's problem+json, split around its per-request values."""
    body = problem_body(
        503,
        title="Overloaded",
        detail=OVERLOADED_DETAIL,
        type_slug=OVERLOADED_SLUG,
        instance=_INSTANCE_MARK,
        request_id=_REQUEST_ID_MARK,
    )
    text = json.dumps(body, separators=(",", ":"))
    head, _, rest = text.partition(json.dumps(_INSTANCE_MARK))
    middle, _, tail = rest.partition(json.dumps(_REQUEST_ID_MARK))
    return head.encode(), (middle + '"').encode(), ('"' + tail).encode()


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _is_event_stream(start: Message) -> bool:
    return any(
        name.lower() == b"content-type" and value.lower().startswith(b"text/event-stream")
        for name, value in start.get("headers", ())
    )


async def _received_whole(receive: Receive, max_bytes: int) -> tuple[Receive, str]:
    """Read the request body to its end, to be replayed to the application.

    Returns the replaying receive and how the reading ended: "complete", "left" (the client
    went away first) or "oversized" (more than `max_bytes` arrived: reading stops there and
    the application, whose body limit refuses the request, gets the rest from the client)."""
    messages: deque[Message] = deque()
    received = 0
    outcome = "complete"
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            outcome = "left"
            break
        received += len(message.get("body", b""))
        if received > max_bytes:
            outcome = "oversized"
            break
        if not message.get("more_body", False):
            break

    async def replay() -> Message:
        return messages.popleft() if messages else await receive()

    return replay, outcome


class InFlightGate:
    """The admission gate, as the outermost ASGI layer (see the module docstring).

    `request_id`: the id a refusal carries, from the request's headers (the client's
    X-Request-ID when sane, else a new one); `static_headers`: the security headers every
    answer carries; `cors_origins`, `cors_expose`: the allowed browser origins, and what a
    refusal lets them read.
    """

    def __init__(
        self,
        app: ASGIApp,
        limit: InFlightLimit,
        *,
        max_body_bytes: int,
        request_id: Callable[[bytes], str],
        static_headers: Sequence[tuple[bytes, bytes]],
        cors_origins: Sequence[str],
        cors_expose: Sequence[str],
        on_refused_request: Callable[[str], None] = lambda method: None,
    ) -> None:
        self.app = app
        self.limit = limit
        self.max_body_bytes = max_body_bytes
        self._request_id = request_id
        self._on_refused_request = on_refused_request
        self._head, self._middle, self._tail = _encoded_body_parts()
        self._headers = [
            (b"content-type", PROBLEM_JSON.encode()),
            (b"retry-after", str(RETRY_AFTER_SECONDS).encode()),
            (b"vary", b"Origin"),  # as CORS marks every answer: it depends on the Origin
            *static_headers,
        ]
        self._cors_origins = frozenset(origin.encode("latin-1") for origin in cors_origins)
        self._cors_headers = [
            (b"access-control-allow-credentials", b"true"),
            (b"access-control-expose-headers", ", ".join(cors_expose).encode()),
        ]

    async def refuse(self, scope: Scope, send: Send, supplied_id: bytes, origin: bytes | None) -> None:
        self.limit.refused()
        self._on_refused_request(scope["method"])
        request_id = self._request_id(supplied_id)
        body = b"".join(
            (self._head, json.dumps(scope["path"]).encode(), self._middle, request_id.encode(), self._tail)
        )
        headers = [
            *self._headers,
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", request_id.encode()),
        ]
        if origin is not None and origin in self._cors_origins:
            headers += [(b"access-control-allow-origin", origin), *self._cors_headers]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _route_path(scope) in NEVER_REFUSED:
            await self.app(scope, receive, send)
            return
        supplied_id = b""
        origin: bytes | None = None
        has_body = preflight = declared_too_large = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                value = value.strip()
                has_body = has_body or value not in (b"", b"0")
                # Not a size, or too large: the body limit answers without the body.
                declared_too_large = not value.isdigit() or int(value) > self.max_body_bytes
            elif name == b"transfer-encoding":
                has_body = True
            elif name == b"x-request-id":
                supplied_id = value
            elif name == b"origin":
                origin = value
            elif name == b"access-control-request-method":
                preflight = True
        if (preflight and origin is not None and scope["method"] == "OPTIONS") or declared_too_large:
            # Answered before any route, without a slot: by CORS, or by the body limit.
            await self.app(scope, receive, send)
            return
        limit = self.limit
        if limit.full:  # refused before its body is read: a refusal costs next to nothing
            await self.refuse(scope, send, supplied_id, origin)
            return
        if has_body:
            receive, outcome = await _received_whole(receive, self.max_body_bytes)
            if outcome == "left":
                return  # the client left before its body arrived: nobody to answer
            if outcome == "oversized":
                await self.app(scope, receive, send)  # refused by the body limit, no slot
                return
        if not limit.admit():
            await self.refuse(scope, send, supplied_id, origin)
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
