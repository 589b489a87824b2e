"""Runs per second through the queue with the offline `test` model, from API accept to
completion, with 1 and 2 `agentkeep worker` processes on PostgreSQL (procrastinate), and the
p50 dispatch latency (run created -> run started by a worker, measured on an idle queue).
The embedded default (SQLite, in-process runner) is measured the same way for reference.

    .venv/bin/python -m bench.runs_throughput [--runs 200] [--latency-runs 20]
        [--postgres-admin postgresql+asyncpg://postgres@127.0.0.1:5432/postgres]

Timestamps come from the runs table (created_at, started_at, finished_at), so the figures
do not include the client's polling interval.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from agentkeep.config import Settings
from tests.support.databases import create_postgres_database, drop_postgres_database
from tests.support.server import running_server

PASSWORD = "bench-password-" + secrets.token_hex(8)
TERMINAL = ("completed", "failed", "cancelled", "timed_out")


@contextlib.contextmanager
def workers(env: dict[str, str], count: int, folder: Path) -> Iterator[None]:
    base = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    processes = []
    for index in range(count):
        log = (folder / f"worker-{index}.log").open("wb")
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "agentkeep", "worker"],
                env={**base, **env},
                cwd=folder,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    try:
        time.sleep(2)  # let them connect and start polling
        for process in processes:
            if process.poll() is not None:
                raise RuntimeError(f"worker exited: {(folder / 'worker-0.log').read_text()}")
        yield
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def setup(base_url: str) -> tuple[dict[str, str], str]:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        user = {"username": "bench", "email": "bench@example.com", "password": PASSWORD}
        client.post("/auth/register", json=user).raise_for_status()
        login = client.post("/auth/login", data={"username": "bench", "password": PASSWORD})
        login.raise_for_status()
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        agent = client.post(
            "/api/agents",
            headers=headers,
            json={"name": "bench", "model": "test", "tools": [{"name": "calculator"}]},
        )
        agent.raise_for_status()
        return headers, agent.json()["id"]


async def submit(
    base_url: str, headers: dict[str, str], agent_id: str, count: int, in_flight: int
) -> list[str]:
    ids: list[str] = []
    gate = asyncio.Semaphore(in_flight)
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=60) as client:

        async def one(index: int) -> None:
            async with gate:
                answer = await client.post(
                    f"/api/agents/{agent_id}/runs", json={"input": f"What is {index}*7+1?"}
                )
                answer.raise_for_status()
                ids.append(answer.json()["id"])

        await asyncio.gather(*(one(index) for index in range(count)))
    return ids


async def wait_done(
    database_url: str, ids: list[str], limit_seconds: float
) -> list[tuple[float, float, float, str]]:
    engine = create_async_engine(database_url, poolclass=NullPool)
    try:
        deadline = time.monotonic() + limit_seconds
        while True:
            async with engine.connect() as connection:
                rows = (
                    await connection.execute(
                        text("SELECT id, status, created_at, started_at, finished_at FROM runs")
                    )
                ).all()
            wanted_ids = {uuid.UUID(i) for i in ids}
            wanted = [row for row in rows if uuid.UUID(str(row.id)) in wanted_ids]
            if len(wanted) == len(ids) and all(row.status in TERMINAL for row in wanted):
                return [
                    (_ts(row.created_at), _ts(row.started_at), _ts(row.finished_at), row.status)
                    for row in wanted
                ]
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{sum(row.status in TERMINAL for row in wanted)}/{len(ids)} runs finished"
                )
            await asyncio.sleep(0.2)
    finally:
        await engine.dispose()


def _ts(value: object) -> float:
    if isinstance(value, str):  # SQLite returns text
        from datetime import datetime

        return datetime.fromisoformat(value).timestamp()
    return value.timestamp()  # type: ignore[attr-defined]


def measure(
    label: str, database_url: str, env: dict[str, str], worker_count: int, runs: int, latency_runs: int
) -> dict[str, object]:
    folder = Path(tempfile.mkdtemp(prefix="agentkeep-runs-bench-"))
    env = {
        **env,
        "DATABASE_URL": database_url,
        "JWT_SECRET": secrets.token_urlsafe(48),
        "RATE_LIMIT_RUNS": "1000000/minute",
        "RATE_LIMIT_API": "1000000/minute",
        "LOG_LEVEL": "WARNING",
    }
    with running_server(env, workdir=folder) as server:
        headers, agent_id = setup(server.base_url)
        with workers(env, worker_count, folder) if worker_count else contextlib.nullcontext():
            # Dispatch latency on an idle queue: one run at a time.
            latencies = []
            for index in range(latency_runs):
                ids = asyncio.run(submit(server.base_url, headers, agent_id, 1, 1))
                ((created, started, _finished, _status),) = asyncio.run(wait_done(database_url, ids, 60))
                latencies.append((started - created) * 1000)
                del index
            # Throughput: a burst of runs, accept to completion.
            ids = asyncio.run(submit(server.base_url, headers, agent_id, runs, 16))
            rows = asyncio.run(wait_done(database_url, ids, 600))
    first = min(row[0] for row in rows)
    last = max(row[2] for row in rows)
    return {
        "setup": label,
        "workers": worker_count,
        "runs": runs,
        "completed": sum(row[3] == "completed" for row in rows),
        "runs_per_s": round(runs / (last - first), 1),
        "dispatch_p50_ms": round(statistics.median(latencies), 1),
        "dispatch_max_ms": round(max(latencies), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--latency-runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        sqlite_url = f"sqlite+aiosqlite:///{folder}/bench.db"
        row = measure("SQLite, in-process runner", sqlite_url, {}, 0, args.runs, args.latency_runs)
        print(json.dumps(row), flush=True)
    for count in (1, 2):
        database_url = asyncio.run(create_postgres_database("agentkeep_bench_runs"))
        try:
            env = {"RUN_EXECUTION": "queue"}
            row = measure("PostgreSQL, procrastinate", database_url, env, count, args.runs, args.latency_runs)
            print(json.dumps(row), flush=True)
        finally:
            asyncio.run(drop_postgres_database(database_url))


if __name__ == "__main__":
    main()
