"""The fixes report's connection-pool test: 100 concurrent GET /health (which queries the
database) against a real server, repeated, on SQLite and on PostgreSQL.

    .venv/bin/python -m bench.health_load [--rounds 20] [--concurrency 100] [--postgres URL]

Reports throughput, latency percentiles, errors and pool timeouts (from the server log).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import httpx

from bench.stats import median, summary_ms
from tests.support.server import running_server


async def _round(client: httpx.AsyncClient, concurrency: int) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = 0

    async def one() -> None:
        nonlocal errors
        started = time.perf_counter()
        try:
            response = await client.get("/health")
            if response.status_code != 200:
                errors += 1
        except httpx.HTTPError:
            errors += 1
        latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(one() for _ in range(concurrency)))
    return latencies, errors


async def _load(base_url: str, rounds: int, concurrency: int) -> dict[str, object]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client:
        await _round(client, 10)  # warm-up: connections, pool, caches
        all_latencies: list[float] = []
        errors = 0
        rates = []
        for _ in range(rounds):
            started = time.perf_counter()
            latencies, failed = await _round(client, concurrency)
            rates.append(concurrency / (time.perf_counter() - started))
            all_latencies.extend(latencies)
            errors += failed
    return {
        "requests": rounds * concurrency,
        "errors": errors,
        "median_rps": round(median(rates), 1),
        **summary_ms(all_latencies),
    }


def run(database_url: str | None, rounds: int, concurrency: int, label: str) -> dict[str, object]:
    env = {"DATABASE_URL": database_url} if database_url else {}
    with running_server(env) as server:
        result = asyncio.run(_load(server.base_url, rounds, concurrency))
        log = server.log()
    result["pool_timeouts"] = log.count("QueuePool limit") + log.count("TimeoutError")
    result["database"] = label
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--postgres", help="postgresql+asyncpg:// URL of an empty, migratable database")
    args = parser.parse_args()
    results = [run(None, args.rounds, args.concurrency, "sqlite")]
    if args.postgres:
        results.append(run(args.postgres, args.rounds, args.concurrency, "postgresql"))
    for result in results:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
