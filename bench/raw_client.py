"""A lean HTTP/1.1 client for load that must be counted exactly: keep-alive connections on
asyncio streams, one request at a time on each, no parsing beyond status, Content-Length,
Retry-After and the JSON body.

httpx spends 2-5 ms of CPU per request on a 2-core host, as much as the server it measures;
this client spends a small fraction of that, so a benchmark's wall time is the server's.
(wrk is leaner still, but runs for a duration, not a count of requests.)
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from bench.scale_api import Created, run_input


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Connection:
    host: str
    port: int
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    reconnects: int = field(default=0)

    async def post(self, path: str, headers: Mapping[str, str], body: bytes) -> Answer:
        """POST `body`; on a connection the server closed meanwhile, connect and send again."""
        head = [f"POST {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(body)}"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        request = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        while True:
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            assert self.reader is not None
            try:
                self.writer.write(request)
                return await self._answer(self.reader)
            except (ConnectionError, asyncio.IncompleteReadError):
                self.writer.close()
                self.writer = None
                self.reconnects += 1

    @staticmethod
    async def _answer(reader: asyncio.StreamReader) -> Answer:
        lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        return Answer(status, headers, body)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def create_runs_raw(
    base_url: str,
    auth_headers: Mapping[str, str],
    agent_id: str,
    count: int,
    clients: int,
    first: int = 0,
) -> Created:
    """As `scale_api.create_runs` (an Idempotency-Key each, input `run_input(first + i)`,
    a 503 waited out and sent again), on `clients` lean connections."""
    url = urlsplit(base_url)
    assert url.hostname is not None
    assert url.port is not None
    ids: list[str] = [""] * count
    keys = [f"bench-{uuid.uuid4().hex}" for _ in range(count)]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    pending = iter(range(count))
    path = f"/api/agents/{agent_id}/runs"
    connections = [Connection(url.hostname, url.port) for _ in range(clients)]

    async def client(connection: Connection) -> None:
        for index in pending:
            body = json.dumps({"input": run_input(first + index)}).encode()
            headers = {**auth_headers, "Content-Type": "application/json", "Idempotency-Key": keys[index]}
            while True:
                sent = time.perf_counter()
                answer = await connection.post(path, headers, body)
                latencies.append((time.perf_counter() - sent) * 1000)
                statuses[answer.status] = statuses.get(answer.status, 0) + 1
                if answer.status == 503:  # overloaded: retry the same key, as told
                    await asyncio.sleep(float(answer.headers.get("retry-after", "1")))
                    continue
                if answer.status != 202:
                    raise RuntimeError(f"run creation answered {answer.status}: {answer.body[:200]!r}")
                ids[index] = answer.json()["id"]
                break

    started = time.perf_counter()
    try:
        await asyncio.gather(*(client(connection) for connection in connections))
    finally:
        for connection in connections:
            connection.close()
    seconds = time.perf_counter() - started
    resent = sum(connection.reconnects for connection in connections)
    return Created(
        ids=ids, keys=keys, seconds=seconds, latencies_ms=latencies, statuses=statuses, resent=resent
    )
