"""A lean Server-Sent Events client for many open streams: one asyncio protocol per
connection that stamps each event with the wall-clock time its last byte arrived, so
delivery can be timed against the event row's commit timestamp (same host, same clock).

httpx is not used here: a thousand httpx streams cost the client enough CPU, on a host it
shares with the server, to show up in the latencies it is meant to measure.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

# (stream label, event id, event kind, data, wall-clock time received)
OnEvent = Callable[[str, int, str, bytes, float], None]


class EventStream(asyncio.Protocol):
    """One `GET` of an event stream over HTTP/1.1 (chunked or not)."""

    def __init__(self, request: bytes, label: str, on_event: OnEvent) -> None:
        loop = asyncio.get_running_loop()
        self.request = request
        self.label = label
        self.on_event = on_event
        self.headers_done: asyncio.Future[int] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.status = 0
        self.chunked = False
        self._head = bytearray()
        self._raw = bytearray()  # body bytes not yet de-chunked
        self._text = bytearray()  # de-chunked body not yet split into events
        self.ended = False  # the server closed the body (terminal event sent)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        if not self.headers_done.done():
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                return
            head, body = bytes(self._head[:end]), bytes(self._head[end + 4 :])
            self.status = int(head.split(b" ", 2)[1])
            self.chunked = b"transfer-encoding: chunked" in head.lower()
            self.headers_done.set_result(self.status)
            data = body
        self._raw += data
        self._dechunk()
        self._events(now)

    def _dechunk(self) -> None:
        if not self.chunked:
            self._text += self._raw
            self._raw.clear()
            return
        while True:
            line_end = self._raw.find(b"\r\n")
            if line_end < 0:
                return
            size = int(bytes(self._raw[:line_end]).split(b";")[0], 16)
            if size == 0:
                self.ended = True
                self._raw.clear()
                return
            if len(self._raw) < line_end + 2 + size + 2:
                return
            self._text += self._raw[line_end + 2 : line_end + 2 + size]
            del self._raw[: line_end + 2 + size + 2]

    def _events(self, now: float) -> None:
        while True:
            end = self._text.find(b"\n\n")
            if end < 0:
                return
            block = bytes(self._text[:end])
            del self._text[: end + 2]
            seq, kind, data = None, "", b""
            for line in block.split(b"\n"):
                if line.startswith(b"id:"):
                    seq = int(line[3:].strip())
                elif line.startswith(b"event:"):
                    kind = line[6:].strip().decode()
                elif line.startswith(b"data:"):
                    data = line[5:].strip()
            if seq is not None:
                self.on_event(self.label, seq, kind, data, now)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.headers_done.done():
            self.headers_done.set_result(0)
        if not self.closed.done():
            self.closed.set_result(None)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


@dataclass
class Opened:
    streams: list[EventStream]
    refused: dict[int, int]
    seconds: float


async def open_streams(
    base_url: str, token: str, run_ids: list[str], on_event: OnEvent, concurrency: int, retries: int = 20
) -> Opened:
    """Open `GET /api/runs/{id}/events` for every run, at most `concurrency` being opened at
    once (an open stream takes no request slot once its headers are sent). A refusal (503
    overloaded) is retried after a pause."""
    loop = asyncio.get_running_loop()
    host, port = base_url.removeprefix("http://").split(":")
    streams: list[EventStream] = []
    refused: dict[int, int] = {}
    gate = asyncio.Semaphore(concurrency)

    async def one(run_id: str) -> None:
        request = (
            f"GET /api/runs/{run_id}/events HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
        ).encode()
        for _ in range(retries):
            async with gate:
                _transport, stream = await loop.create_connection(
                    lambda: EventStream(request, run_id, on_event), host, int(port)
                )
                status = await stream.headers_done
            if status == 200:
                streams.append(stream)
                return
            refused[status] = refused.get(status, 0) + 1
            stream.close()
            await asyncio.sleep(0.5)
        raise RuntimeError(f"stream for {run_id} refused {retries} times: {refused}")

    started = time.perf_counter()
    await asyncio.gather(*(one(run_id) for run_id in run_ids))
    return Opened(streams=streams, refused=refused, seconds=time.perf_counter() - started)
