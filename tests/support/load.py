"""Continuous mixed load against a real server that records every answer, by phase.

Fault tests run it while they stop, freeze and restart a dependency, then check what each
answer was: the test names the phase ("before", "stopping", "down", ...) and every answer
is filed under the phase in which its request was sent.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from tests.agents.helpers import AGENTS, agent_body

# What a request of each kind does; all read or write the database.
KINDS = ("list_agents", "create_agent", "ready")
# A request that gets no answer at all within this is a hung request: a failure in itself.
CLIENT_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Answer:
    phase: str
    kind: str
    status: int | None  # None: no HTTP answer (the error says why)
    retry_after: str | None = None
    content_type: str | None = None
    request_id: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass
class MixedLoad:
    """`clients` concurrent loops, each cycling through KINDS as fast as answers come."""

    http: httpx.AsyncClient
    headers: dict[str, str]
    clients: int = 6
    phase: str = "before"
    answers: list[Answer] = field(default_factory=list)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)

    async def _request(self, kind: str) -> httpx.Response:
        if kind == "list_agents":
            return await self.http.get(AGENTS, headers=self.headers)
        if kind == "create_agent":
            body = agent_body(name=f"load-{secrets.token_hex(6)}")
            return await self.http.post(AGENTS, json=body, headers=self.headers)
        return await self.http.get("/health/ready")

    async def _loop(self, offset: int) -> None:
        kinds = itertools.islice(itertools.cycle(KINDS), offset, None)
        for kind in kinds:
            if self._stopping.is_set():
                return
            phase = self.phase
            try:
                response = await self._request(kind)
            except httpx.HTTPError as exc:
                self.answers.append(Answer(phase, kind, None, error=repr(exc)))
                await asyncio.sleep(0.05)
                continue
            self.answers.append(
                Answer(
                    phase,
                    kind,
                    response.status_code,
                    retry_after=response.headers.get("retry-after"),
                    content_type=response.headers.get("content-type"),
                    request_id=response.headers.get("x-request-id"),
                )
            )
            if response.status_code == 503:
                await asyncio.sleep(0.02)  # a real client would honour Retry-After; keep pressure

    async def run(self, script: Callable[[MixedLoad], Awaitable[None]]) -> None:
        """Keep the load going while `script` runs (it moves `phase` along), then stop it."""
        loops = [asyncio.create_task(self._loop(offset)) for offset in range(self.clients)]
        try:
            await script(self)
        finally:
            self._stopping.set()
            await asyncio.gather(*loops)

    def in_phase(self, *phases: str) -> list[Answer]:
        return [answer for answer in self.answers if answer.phase in phases]

    def summary(self) -> dict[str, Counter[int | None]]:
        """Answers counted by phase and status, for failure messages and reports."""
        table: dict[str, Counter[int | None]] = {}
        for answer in self.answers:
            table.setdefault(answer.phase, Counter())[answer.status] += 1
        return table

    async def until_recovered(self, consecutive: int, within: float) -> None:
        """Wait until the last `consecutive` answers of every kind succeeded."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        start = len(self.answers)
        while loop.time() < deadline:
            recent = self.answers[start:]
            if all(
                len(tail := [a for a in recent if a.kind == kind]) >= consecutive
                and all(a.ok for a in tail[-consecutive:])
                for kind in KINDS
            ):
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"no recovery within {within:g}s: {self.summary()}")
