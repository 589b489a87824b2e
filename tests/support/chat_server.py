"""A small OpenAI-compatible chat completions server on 127.0.0.1, answering from a script.

It runs uvicorn + Starlette in a background thread on a free port. Each POST to
`/v1/chat/completions` takes the next scripted step: a `Reply` (status and JSON body), a `Slow`
reply (sent after a while), a `Hang` (no answer for a while, then a 504) or a `Redirect`.
Every request is recorded (body, Authorization and Host headers), so tests see what the
client sent, how often it retried, and what it never sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Route


@dataclass(frozen=True)
class Reply:
    body: dict[str, Any]
    status: int = 200


@dataclass(frozen=True)
class Hang:
    seconds: float


@dataclass(frozen=True)
class Redirect:
    location: str


@dataclass(frozen=True)
class Slow:
    """`reply`, sent after `seconds` (a model that takes its time to answer)."""

    seconds: float
    reply: Reply


Step = Reply | Hang | Redirect | Slow


@dataclass
class SeenChatRequest:
    body: dict[str, Any]
    authorization: str | None
    host: str | None = None


@dataclass
class ChatServer:
    script: list[Step] = field(default_factory=list)
    requests: list[SeenChatRequest] = field(default_factory=list)
    port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def _completions(self, request: Request) -> JSONResponse | RedirectResponse:
        headers = request.headers
        self.requests.append(
            SeenChatRequest(await request.json(), headers.get("authorization"), headers.get("host"))
        )
        step = self.script.pop(0) if self.script else Reply({"error": {"message": "no scripted reply"}}, 500)
        if isinstance(step, Hang):
            await asyncio.sleep(step.seconds)
            return JSONResponse({"error": {"message": "hung"}}, status_code=504)
        if isinstance(step, Slow):
            await asyncio.sleep(step.seconds)
            return JSONResponse(step.reply.body, status_code=step.reply.status)
        if isinstance(step, Redirect):
            return RedirectResponse(step.location, status_code=307)
        return JSONResponse(step.body, status_code=step.status)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/chat/completions", self._completions, methods=["POST"])])


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def completion(
    message: dict[str, Any], finish_reason: str, prompt_tokens: int, completion_tokens: int
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-local",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "local-model",
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": _usage(prompt_tokens, completion_tokens),
    }


def text_reply(
    text: str, prompt_tokens: int = 12, completion_tokens: int = 5, finish_reason: str = "stop"
) -> Reply:
    return Reply(
        completion({"role": "assistant", "content": text}, finish_reason, prompt_tokens, completion_tokens)
    )


def tool_call_reply(
    calls: list[tuple[str, str, str]], prompt_tokens: int = 20, completion_tokens: int = 9
) -> Reply:
    """A response calling tools: (call id, tool name, arguments as JSON text) each."""
    tool_calls = [
        {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
        for call_id, name, arguments in calls
    ]
    message = {"role": "assistant", "content": None, "tool_calls": tool_calls}
    return Reply(completion(message, "tool_calls", prompt_tokens, completion_tokens))


def server_error() -> Reply:
    return Reply({"error": {"message": "internal failure", "type": "server_error"}}, 500)


@contextlib.contextmanager
def running_chat_server(
    script: list[Step] | None = None, chat: ChatServer | None = None, *, keep_alive_seconds: int = 5
) -> Iterator[ChatServer]:
    """Serve `chat` (by default one answering from `script`) on a free loopback port until the block ends.

    `keep_alive_seconds`: how long an idle connection stays open (uvicorn's default, 5 s,
    unless told otherwise).
    """
    chat = chat or ChatServer(script=list(script or []))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    chat.port = int(sock.getsockname()[1])
    config = uvicorn.Config(
        chat.app(),
        log_level="warning",
        lifespan="off",
        ws="none",
        http="h11",
        timeout_graceful_shutdown=1,
        timeout_keep_alive=keep_alive_seconds,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the chat server did not start")
            time.sleep(0.01)
        yield chat
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
