"""Graceful shutdown for `agentkeep serve`: readiness turns 503 before the server stops.

On SIGTERM uvicorn closes its listening sockets at once, waits for in-flight requests (up to
`timeout_graceful_shutdown`) and only then runs the lifespan shutdown: the application would
learn of the shutdown last, and a load balancer would only notice refused connections.

`GracefulShutdown` wraps the application served by `agentkeep serve`. When the server starts
the lifespan (always after it has installed its own signal handlers, in every worker
process), it wraps those handlers. On SIGTERM the application is marked draining at once, so
/health and /health/ready answer 503 `draining`; the server keeps accepting requests for
SHUTDOWN_DRAIN_SECONDS so load balancers see the 503 and move traffic away; then the signal
goes to uvicorn's own handler, which stops accepting, lets in-flight requests finish within
SHUTDOWN_TIMEOUT_SECONDS, runs the lifespan shutdown (pools and clients closed) and exits.
SIGINT (Ctrl+C) marks the application draining too but skips the drain period.

While draining, every response carries `Connection: close`: a proxy that keeps idle
connections to this instance (nginx `keepalive`) loses each one after its next answer, so when
the instance stops accepting none is left that the proxy could pick for a request at the moment
the instance closes it (a request lost that way cannot be resent if it was a POST).
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import structlog
from fastapi import FastAPI
from starlette.types import Message, Receive, Scope, Send

logger = structlog.get_logger("agentkeep.shutdown")

SignalHandler = Callable[[int, FrameType | None], Any]
HOOKED_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Drain:
    """Whether this process was asked to stop; readiness answers 503 once it was."""

    def __init__(self) -> None:
        self.requested_at: float | None = None

    @property
    def active(self) -> bool:
        return self.requested_at is not None

    def begin(self) -> bool:
        """Start draining; True the first time only."""
        if self.requested_at is not None:
            return False
        self.requested_at = time.monotonic()
        return True


def is_draining(app: Any) -> bool:
    """True once the process serving `app` received SIGTERM or SIGINT."""
    drain = getattr(app.state, "drain", None)
    return isinstance(drain, Drain) and drain.active


class GracefulShutdown:
    """ASGI wrapper that tells the application about a shutdown before the server acts on it."""

    def __init__(self, app: FastAPI, drain_seconds: float) -> None:
        self.app = app
        self.drain_seconds = drain_seconds
        self.drain = Drain()
        app.state.drain = self.drain
        self._delegated: set[int] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            self._hook_signals(asyncio.get_running_loop())
        elif scope["type"] == "http":
            send = self._closing_while_draining(send)
        await self.app(scope, receive, send)

    def _closing_while_draining(self, send: Send) -> Send:
        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start" and self.drain.active:
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        return send_closing

    def _hook_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signals reach the main thread only; nothing to hook
        for signum in HOOKED_SIGNALS:
            previous = signal.getsignal(signum)
            if callable(previous):
                # uvicorn restores its predecessors when it stops, removing this hook too.
                signal.signal(signum, self._handler(signum, previous, loop))

    def _handler(
        self, signum: int, previous: SignalHandler, loop: asyncio.AbstractEventLoop
    ) -> Callable[[int, FrameType | None], None]:
        def on_signal(_signum: int, frame: FrameType | None) -> None:
            # Only flag and hand over here: logging or scheduling from a signal handler could
            # re-enter a lock the interrupted code holds.
            first = self.drain.begin()
            try:
                loop.call_soon_threadsafe(self._after_signal, signum, previous, first)
            except RuntimeError:  # the loop is closed: nothing left to drain
                previous(signum, frame)

        return on_signal

    def _after_signal(self, signum: int, previous: SignalHandler, first: bool) -> None:
        name = signal.Signals(signum).name
        if signum == signal.SIGTERM and first and self.drain_seconds > 0:
            logger.info("shutdown_draining", signal=name, drain_seconds=self.drain_seconds)
            asyncio.get_running_loop().call_later(self.drain_seconds, self._delegate, signum, previous)
            return
        logger.info("shutdown_started", signal=name)
        self._delegate(signum, previous)

    def _delegate(self, signum: int, previous: SignalHandler) -> None:
        if signum == signal.SIGTERM and signum in self._delegated:
            return  # a second SIGTERM during the drain already started the shutdown
        self._delegated.add(signum)
        previous(signum, None)


def app_for_workers() -> GracefulShutdown:
    """Factory for `agentkeep serve --workers N`: each worker process builds its own app."""
    from agentkeep.app import app_from_environment

    app = app_from_environment()
    return GracefulShutdown(app, app.state.settings.shutdown_drain_seconds)
