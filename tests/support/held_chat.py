"""An OpenAI-compatible model on 127.0.0.1 that holds each request until the test lets it answer.

Every request waits while the gate is closed and for at least `hold_seconds`, then answers
`answer: <the latest user message>`. The server counts the requests it is holding: a turn
whose model request is held is running, so `max_in_flight` shows whether two turns ever
talked to the model at once. A client that goes away while held (its run was cancelled) is
no longer counted once the server notices.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse

from tests.support.chat_server import ChatServer, SeenChatRequest, running_chat_server, text_reply

POLL_SECONDS = 0.01


def _open_gate() -> threading.Event:
    gate = threading.Event()
    gate.set()
    return gate


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def conversation(body: dict[str, Any]) -> list[tuple[str, str]]:
    """The user and assistant messages a request carried, as (role, text), in order."""
    return [
        (message["role"], _text(message.get("content")))
        for message in body["messages"]
        if message["role"] in {"user", "assistant"}
    ]


def user_texts(body: dict[str, Any]) -> list[str]:
    return [text for role, text in conversation(body) if role == "user"]


def answer_to(text: str) -> str:
    return f"answer: {text}"


@dataclass
class HeldChatServer(ChatServer):
    hold_seconds: float = 0.0
    gate: threading.Event = field(default_factory=_open_gate)
    in_flight: int = 0
    max_in_flight: int = 0
    # Requests whose client went away before the answer.
    abandoned: int = 0

    async def _completions(self, request: Request) -> JSONResponse | RedirectResponse:
        body = await request.json()
        headers = request.headers
        self.requests.append(SeenChatRequest(body, headers.get("authorization"), headers.get("host")))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            answered = await self._hold(request)
        finally:
            # Before the answer leaves: the client sees its answer only after this.
            self.in_flight -= 1
        if not answered:
            self.abandoned += 1
            return JSONResponse({"error": {"message": "client gone"}}, status_code=499)
        return JSONResponse(text_reply(answer_to(user_texts(body)[-1])).body)

    async def _hold(self, request: Request) -> bool:
        """Wait for the gate and the hold time; False if the client disconnected meanwhile."""
        until = time.monotonic() + self.hold_seconds
        while not (self.gate.is_set() and time.monotonic() >= until):
            if await request.is_disconnected():
                return False
            await asyncio.sleep(POLL_SECONDS)
        return True

    async def wait_for_requests(self, count: int, within: float) -> None:
        """Return once `count` requests have arrived in all."""
        deadline = time.monotonic() + within
        while len(self.requests) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.requests)} model requests arrived, expected {count}")
            await asyncio.sleep(0.02)


@contextlib.contextmanager
def running_held_chat_server(hold_seconds: float = 0.0) -> Iterator[HeldChatServer]:
    held = HeldChatServer(hold_seconds=hold_seconds)
    with running_chat_server(chat=held):
        try:
            yield held
        finally:
            held.gate.set()  # nothing stays held while the server stops
