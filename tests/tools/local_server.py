"""A tiny HTTP/1.1 server on 127.0.0.1 for the http_get tests, with the routes they need."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class SeenRequest:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class LocalServer:
    host: str = "127.0.0.1"
    port: int = 0
    tls: ssl.SSLContext | None = None
    requests: list[SeenRequest] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _handlers: set[asyncio.Task[Any]] = field(default_factory=set)

    def url(self, path: str, host: str | None = None) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{host or self.host}:{self.port}{path}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        for task in list(self._handlers):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        method, target, _version = head[0].split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in head[1:] if line)}
        self.requests.append(SeenRequest(method, target, headers))
        path = urlsplit(target).path
        query = parse_qs(urlsplit(target).query)

        async def respond(status: str, content_type: str, body: bytes, extra: str = "") -> None:
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                f"Connection: close\r\n{extra}\r\n".encode("latin-1")
                + body
            )
            await writer.drain()

        if path == "/text":
            await respond("200 OK", "text/plain; charset=utf-8", "hello from the test server ✓".encode())
        elif path == "/json":
            await respond("200 OK", "application/json", b'{"answer": 42}')
        elif path == "/host":
            await respond("200 OK", "text/plain", headers.get("host", "").encode())
        elif path == "/png":
            await respond("200 OK", "image/png", b"\x89PNG\r\n\x1a\n" + bytes(100))
        elif path == "/gzip":
            await respond("200 OK", "text/plain", gzip.compress(b"a" * 10_000), "Content-Encoding: gzip\r\n")
        elif path == "/big":
            size = 4 * 1024 * 1024
            writer.write(
                f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {size}\r\n\r\n".encode()
            )
            for _ in range(size // 65536):
                writer.write(b"x" * 65536)
                await writer.drain()
        elif path == "/slow":
            await asyncio.sleep(30)
        elif path.startswith("/redirect/"):
            left = int(path.rsplit("/", 1)[1])
            if left == 0:
                await respond("200 OK", "text/plain", b"arrived")
            else:
                await respond("302 Found", "text/plain", b"", f"Location: /redirect/{left - 1}\r\n")
        elif path == "/to":
            await respond("302 Found", "text/plain", b"", f"Location: {query['u'][0]}\r\n")
        else:
            await respond("404 Not Found", "text/plain", b"no such route")
