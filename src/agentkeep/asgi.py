"""ASGI helpers shared by the middlewares."""

from __future__ import annotations

from starlette.types import Message, Send


class TrackingSend:
    """Wraps `send` and remembers whether the response has started: after that, an error
    can no longer be answered with a response of its own."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)
