"""Routes a test mounts on its own app to keep requests in flight, and a real server for it.

`GET /test/held` waits until the test opens the gate; `GET /test/until-disconnect` waits
until its client goes away; `POST /test/echo` reads its body; two routes fail, one before
and one after its answer started. The counters tell the test what the handlers saw.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from agentkeep.rbac.dependencies import Public
from tests.support.throwaway import free_port
from tests.support.timing import SCHEDULING_MARGIN_SECONDS

WAIT_SECONDS = 10 + SCHEDULING_MARGIN_SECONDS


@dataclass
class Held:
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    entered: int = 0
    left: int = 0
    arrived: int = 0  # requests the server handed to the app, admitted or not


def mount_held_routes(app: FastAPI) -> Held:
    held = Held()

    @app.get("/test/held", dependencies=[Public])
    async def wait_for_the_gate() -> dict[str, bool]:
        held.entered += 1
        try:
            await held.gate.wait()
        finally:
            held.left += 1
        return {"ok": True}

    @app.get("/test/until-disconnect", dependencies=[Public])
    async def wait_for_the_client_to_leave(request: Request) -> dict[str, bool]:
        held.entered += 1
        while (await request.receive())["type"] != "http.disconnect":
            pass
        held.left += 1
        return {"ok": False}

    @app.post("/test/echo", dependencies=[Public])
    async def echo(request: Request) -> dict[str, int]:
        return {"received": len(await request.body())}

    @app.get("/test/fails", dependencies=[Public])
    async def fail() -> None:
        raise RuntimeError("a bug before the answer")

    @app.get("/test/fails-midway", dependencies=[Public])
    async def fail_midway() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"partial"
            raise RuntimeError("a bug after the answer started")

        return StreamingResponse(chunks(), media_type="text/plain")

    return held


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"never: {what}"
        await asyncio.sleep(0.01)


def counting_arrivals(app: ASGIApp, held: Held) -> ASGIApp:
    """The app, counting each HTTP request the server hands it (before any middleware)."""

    async def counted(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            held.arrived += 1
        await app(scope, receive, send)

    return counted


@asynccontextmanager
async def served(app: ASGIApp) -> AsyncIterator[tuple[str, int]]:
    """`app` (its lifespan already started) on a loopback uvicorn: (base URL, port)."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, lifespan="off", log_config=None, access_log=False
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await until(lambda: server.started, "uvicorn started")
    try:
        yield f"http://127.0.0.1:{port}", port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=WAIT_SECONDS)


@dataclass
class RawRequest:
    """One HTTP/1.1 request on its own connection, written by hand: sent in parts, or dropped."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    @classmethod
    async def open(
        cls, port: int, method: str, path: str, headers: Mapping[str, str] | None = None, body: bytes = b""
    ) -> RawRequest:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        lines = [
            f"{method} {path} HTTP/1.1",
            "Host: 127.0.0.1",
            *(f"{k}: {v}" for k, v in (headers or {}).items()),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await writer.drain()
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def answer(self) -> tuple[int, dict[str, str]]:
        """The status and headers of the answer."""
        status = int((await self._line()).split()[1])
        headers: dict[str, str] = {}
        while line := await self._line():
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return status, headers

    async def _line(self) -> str:
        read: Awaitable[bytes] = self.reader.readline()
        return (await asyncio.wait_for(read, timeout=WAIT_SECONDS)).decode().rstrip("\r\n")

    async def drop(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()
