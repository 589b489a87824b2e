"""What the load-balanced tests send through nginx: a load that records every answer by phase,
a page that holds a tool's request until released, and a reader of event streams."""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx


class HeldPage:
    """An HTTP server whose answers wait until the test releases them."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.requested = threading.Event()
        self.answered = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requested.set()
                outer.release.wait(60)
                body = b"the report"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                outer.answered.set()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])


def sse_events(lines: list[str]) -> list[dict[str, str]]:
    events: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in lines:
        if not line:
            if current:
                events.append(current)
            current = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            current[name] = value.removeprefix(" ")
    return events


@dataclass
class ApiLoad:
    """Clients that alternate listing and creating agents through nginx, recording each answer
    by phase. No readiness probe goes through nginx: a draining instance's 503 there would
    tell nginx to skip it, which a deployment cannot count on.

    They behave as the runbook tells API clients to (docs/OPERATIONS.md): a create carries an
    `Idempotency-Key`, and a request that met a connection reset or a 502 is sent once more,
    the create with the same key, so that it cannot create twice. nginx resends a GET itself,
    never a POST that reached an instance; one that reached it in the instant it closed its
    listening socket comes back as a 502. `retried` keeps those, to check each made one agent.
    """

    http: httpx.AsyncClient
    headers: dict[str, str]
    phase: str = "before"
    answers: list[tuple[str, str, int | str]] = field(default_factory=list)
    retried: list[tuple[str, str]] = field(default_factory=list)
    stopping: bool = False

    async def _send(self, kind: str, name: str, key: str) -> httpx.Response:
        if kind == "list":
            return await self.http.get("/api/agents", headers=self.headers)
        headers = {**self.headers, "Idempotency-Key": key}
        return await self.http.post("/api/agents", json={"name": name, "model": "test"}, headers=headers)

    async def _client(self) -> None:
        while not self.stopping:
            for kind in ("list", "create"):
                phase = self.phase
                name, key = f"load-{secrets.token_hex(6)}", secrets.token_hex(16)
                outcome: int | str = "unsent"
                for attempt in (1, 2):
                    try:
                        outcome = (await self._send(kind, name, key)).status_code
                    except httpx.TransportError as exc:
                        outcome = repr(exc)
                    if outcome != 502 and isinstance(outcome, int):
                        break
                    if attempt == 1:
                        self.retried.append((kind, name))
                self.answers.append((phase, kind, outcome))

    async def run(self, clients: int, script: Callable[[], Awaitable[None]]) -> None:
        tasks = [asyncio.create_task(self._client()) for _ in range(clients)]
        try:
            await script()
        finally:
            self.stopping = True
            await asyncio.gather(*tasks)

    def summary(self) -> dict[str, Counter[int | str]]:
        table: dict[str, Counter[int | str]] = {}
        for phase, _, outcome in self.answers:
            table.setdefault(phase, Counter())[outcome] += 1
        return table
