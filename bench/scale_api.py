"""What the scale benchmarks do over HTTP: a user, an agent, many runs; and reading the runs
table back to see them finish."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import httpx

from bench.scale import PASSWORD, TERMINAL, sql


@dataclass
class Account:
    token: str
    org_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def register(base_url: str) -> Account:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        user = {"username": "bench", "email": "bench@example.com", "password": PASSWORD}
        client.post("/auth/register", json=user).raise_for_status()
        login = client.post("/auth/login", data={"username": "bench", "password": PASSWORD})
        login.raise_for_status()
        token = login.json()["access_token"]
        me = client.get("/api/agents?limit=1", headers={"Authorization": f"Bearer {token}"})
        me.raise_for_status()
        return Account(token=token, org_id="")


def create_agent(base_url: str, account: Account, model: str, name: str = "bench") -> str:
    with httpx.Client(base_url=base_url, timeout=30, headers=account.headers) as client:
        agent = client.post(
            "/api/agents",
            json={
                "name": name,
                "model": model,
                "system_prompt": "You are a careful assistant. Use the calculator for arithmetic.",
                "tools": [{"name": "calculator"}],
            },
        )
        agent.raise_for_status()
        account.org_id = agent.json()["org_id"]
        return str(agent.json()["id"])


def run_input(index: int) -> str:
    return f"What is {index}*7+1?"


def expected_output(index: int) -> str:
    """The fake model's final answer for `run_input(index)` (the calculator's result)."""
    return f"The answer is {index * 7 + 1}."


@dataclass
class Created:
    ids: list[str]
    keys: list[str]
    seconds: float
    latencies_ms: list[float]
    statuses: dict[int, int]
    # Requests that got no answer (the connection dropped) and were sent again with their key.
    resent: int = 0


async def create_runs(
    base_url: str, account: Account, agent_id: str, count: int, clients: int, first: int = 0
) -> Created:
    """`count` runs through `POST /api/agents/{id}/runs`, `clients` at a time, each with its
    own Idempotency-Key. Index i gets input `run_input(first + i)`. A request that gets no
    answer (a keep-alive connection the server closed as it was sent) is sent again with
    the same key, as a client would: the key makes that safe."""
    ids: list[str] = [""] * count
    keys = [f"bench-{uuid.uuid4().hex}" for _ in range(count)]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    resent = 0
    pending = iter(range(count))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(
        base_url=base_url, headers=account.headers, timeout=120, limits=limits
    ) as http:

        async def client() -> None:
            nonlocal resent
            for index in pending:
                while True:
                    sent = time.perf_counter()
                    try:
                        answer = await http.post(
                            f"/api/agents/{agent_id}/runs",
                            json={"input": run_input(first + index)},
                            headers={"Idempotency-Key": keys[index]},
                        )
                    except (httpx.ReadError, httpx.RemoteProtocolError):
                        resent += 1
                        continue
                    latencies.append((time.perf_counter() - sent) * 1000)
                    statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
                    if answer.status_code == 503:  # overloaded: retry the same key, as told
                        await asyncio.sleep(float(answer.headers.get("Retry-After", "1")))
                        continue
                    answer.raise_for_status()
                    ids[index] = answer.json()["id"]
                    break

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        seconds = time.perf_counter() - started
    return Created(
        ids=ids, keys=keys, seconds=seconds, latencies_ms=latencies, statuses=statuses, resent=resent
    )


async def status_counts(database_url: str) -> dict[str, int]:
    rows = await sql(database_url, "SELECT status, count(*) FROM runs GROUP BY status")
    return {str(status): int(count) for status, count in rows}


async def wait_terminal(database_url: str, count: int, limit_seconds: float, interval: float = 0.25) -> float:
    """Wait until `count` runs are terminal; the monotonic time it was seen."""
    deadline = time.monotonic() + limit_seconds
    while True:
        counts = await status_counts(database_url)
        if sum(counts.get(status, 0) for status in TERMINAL) >= count:
            return time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError(f"runs after {limit_seconds} s: {counts}")
        await asyncio.sleep(interval)


async def run_rows(database_url: str) -> list[Any]:
    rows = await sql(
        database_url,
        "SELECT id, input, status, output, requests, created_at, started_at, finished_at, attempts FROM runs",
    )
    return [SimpleNamespace(**dict(row)) for row in rows]


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def spread(values: list[float]) -> dict[str, float]:
    """p50, p99 and max, rounded (milliseconds or seconds, as given)."""
    if not values:
        return {}
    return {
        "p50": round(statistics.median(values), 3),
        "p99": round(percentile(values, 0.99), 3),
        "max": round(max(values), 3),
    }
