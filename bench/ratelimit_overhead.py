"""Rate limiter overhead per request: memory, Redis on loopback, Redis refused and Redis hung.

    .venv/bin/python bench/ratelimit_overhead.py [--requests 2000] [--redis redis://127.0.0.1:6379/0]

Each scenario serves the same app in-process (httpx ASGI transport, no network between client
and app) and times sequential requests to a route without a limit and to one with a limit
(`rate_limit(RuleName.API)`, quota high enough never to refuse). The difference is what the
limiter adds: one Lua call on Redis per allowed request (the window stats for the RateLimit
field are a second call, made on refusals and on routes with `report_remaining=True`).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

import httpx
from asgi_lifespan import LifespanManager
from fastapi import Depends, Response

from agentkeep.app import create_app
from agentkeep.config import Settings
from agentkeep.context import RequestContextDep
from agentkeep.ratelimit.dependency import rate_limit
from agentkeep.ratelimit.errors import RateLimitDecision
from agentkeep.ratelimit.limiter import RateLimiter
from agentkeep.ratelimit.rules import RuleName


class SilentServer:
    """Accepts TCP connections and never answers: a hung Redis."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = int(self.sock.getsockname()[1])
        self.clients: list[socket.socket] = []
        self.stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.sock.settimeout(0.05)
        while not self.stopped.is_set():
            try:
                self.clients.append(self.sock.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    def close(self) -> None:
        self.stopped.set()
        for client in self.clients:
            client.close()
        self.sock.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def same_dependencies_without_limit(response: Response, context: RequestContextDep) -> str:
    """What `rate_limit` resolves and sets, minus the limiter: isolates FastAPI's share."""
    response.headers["RateLimit"] = '"api";r=1;t=60'
    return context.ip_address or ""


@asynccontextmanager
async def serve(redis_url: str | None, database: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        _env_file=None,
        jwt_secret=secrets.token_urlsafe(48),
        database_url=f"sqlite+aiosqlite:///{database}",
        redis_url=redis_url,
        redis_key_prefix=f"agentkeep-bench-{secrets.token_hex(4)}",
        rate_limit_api="100000000/minute",
        log_level="ERROR",
    )
    app = create_app(settings)

    @app.get("/bench/plain")
    async def plain() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/bench/dependency")
    async def dependency(value: Annotated[str, Depends(same_dependencies_without_limit)]) -> dict[str, bool]:
        return {"ok": bool(value)}

    @app.get("/bench/limited")
    async def limited(
        decision: Annotated[RateLimitDecision, Depends(rate_limit(RuleName.API))],
    ) -> dict[str, bool]:
        return {"ok": decision.allowed}

    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, client=("198.51.100.9", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
            yield http


async def timings(http: httpx.AsyncClient, path: str, count: int) -> list[float]:
    for _ in range(min(100, count)):  # warm-up
        await http.get(path)
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        response = await http.get(path)
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.text
    return samples


def quantile(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[int(q * 100) - 1]


async def scenario(name: str, redis_url: str | None, count: int, database: Path) -> dict[str, float | str]:
    async with serve(redis_url, database) as http:
        # Interleave the two routes so drift affects both alike.
        plain: list[float] = []
        dependency: list[float] = []
        limited: list[float] = []
        for _ in range(4):
            plain += await timings(http, "/bench/plain", count // 4)
            dependency += await timings(http, "/bench/dependency", count // 4)
            limited += await timings(http, "/bench/limited", count // 4)
    return {
        "scenario": name,
        "plain_p50": statistics.median(plain),
        "dependency_p50": statistics.median(dependency),
        "limited_p50": statistics.median(limited),
        "added_p50": statistics.median(limited) - statistics.median(plain),
        "limiter_p50": statistics.median(limited) - statistics.median(dependency),
        "plain_p99": quantile(plain, 0.99),
        "limited_p99": quantile(limited, 0.99),
        "added_p99": quantile(limited, 0.99) - quantile(plain, 0.99),
        "limited_max": max(limited),
    }


async def limiter_alone(name: str, redis_url: str | None, count: int) -> dict[str, float | str]:
    """The limiter's own cost through the fallback layer, no HTTP: a hit, and a hit with the
    window stats (what `report_remaining=True` costs)."""
    settings = Settings(
        _env_file=None,
        jwt_secret=secrets.token_urlsafe(48),
        redis_url=redis_url,
        redis_key_prefix=f"agentkeep-bench-{secrets.token_hex(4)}",
        rate_limit_api="100000000/minute",
        log_level="ERROR",
    )
    limiter = RateLimiter.from_settings(settings)
    await limiter.start()
    samples: dict[bool, list[float]] = {False: [], True: []}
    try:
        for n in range(count + 100):
            for with_state in (False, True):
                started = time.perf_counter()
                await limiter.hit(RuleName.API, "principal:bench", with_state=with_state)
                if n >= 100:
                    samples[with_state].append((time.perf_counter() - started) * 1000)
    finally:
        await limiter.close()
    return {
        "scenario": name,
        "p50": statistics.median(samples[False]),
        "p99": quantile(samples[False], 0.99),
        "max": max(samples[False]),
        "state_p50": statistics.median(samples[True]),
        "state_p99": quantile(samples[True], 0.99),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()

    silent = SilentServer()
    rows = []
    alone = []
    with tempfile.TemporaryDirectory() as folder:
        database = Path(folder) / "bench.db"
        try:
            for name, url in [
                ("memory (no REDIS_URL)", None),
                ("Redis on loopback", args.redis),
                ("Redis refused (port closed)", f"redis://127.0.0.1:{closed_port()}/0"),
                ("Redis hung (accepts, never answers)", f"redis://127.0.0.1:{silent.port}/0"),
            ]:
                alone.append(await limiter_alone(name, url, args.requests))
                rows.append(await scenario(name, url, args.requests, database))
        finally:
            silent.close()

    print(f"limiter.hit alone, {args.requests} sequential calls each, ms")
    print("| scenario | hit p50 | hit p99 | hit max | hit + stats p50 | hit + stats p99 |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in alone:
        cells = " | ".join(f"{row[c]:.3f}" for c in ("p50", "p99", "max", "state_p50", "state_p99"))
        print(f"| {row['scenario']} | {cells} |")
    print()

    print(f"{args.requests} sequential requests per route, times in ms")
    columns = [
        "plain_p50",
        "dependency_p50",
        "limited_p50",
        "added_p50",
        "limiter_p50",
        "plain_p99",
        "limited_p99",
        "added_p99",
        "limited_max",
    ]
    print(
        "| scenario | p50 no limit | p50 same deps, no limiter | p50 limited | added p50 "
        "| limiter's share p50 | p99 no limit | p99 limited | added p99 | max limited |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        cells = " | ".join(f"{row[column]:.2f}" for column in columns)
        print(f"| {row['scenario']} | {cells} |")


if __name__ == "__main__":
    asyncio.run(main())
