"""1,000 run creations through the API, 50 concurrent clients, an Idempotency-Key each; then
the queue is checked for duplicate jobs (issue 15).

    .venv/bin/python -m bench.run_creation [--runs 1000] [--clients 50] [--serve-workers 1]
        [--replays 100] [--repeat 1] [--client raw|httpx] [--profile serve-profile.txt]

A private PostgreSQL cluster (bench/scale.py), a fresh database per round, Redis with its
own key prefix (the per-user runs limit is on, its budget raised out of the way), a real
`agentkeep serve` with RUN_EXECUTION=queue and no worker, so every job stays in the queue
to be counted. Reported: wall time of the creations, creations/s, request latency p50/p99,
CPU per creation of serve, of PostgreSQL (postmaster and backends) and of this client; then
procrastinate jobs per run (runs with none, with more than one), and after `--replays`
repeats of earlier requests (same key, same body): whether each answered the same run as a
replay, and the job count again.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.profiling import py_spy, summarise
from bench.raw_client import create_runs_raw
from bench.scale import (
    bench_env,
    cpu_seconds,
    fresh_database,
    postmaster_pid,
    private_postgres,
    sql,
    statement_counts,
    statement_delta,
)
from bench.scale_api import Account, create_agent, create_runs, register, run_input, spread
from tests.support.server import running_server


async def jobs_per_run(database_url: str) -> dict[str, int]:
    rows = await sql(
        database_url,
        "SELECT r.id, count(j.id) FROM runs r LEFT JOIN procrastinate_jobs j "
        "ON j.args->>'run_id' = r.id::text GROUP BY r.id",
    )
    jobs = [int(count) for _, count in rows]
    return {
        "runs": len(jobs),
        "jobs": sum(jobs),
        "runs_without_job": sum(n == 0 for n in jobs),
        "runs_with_duplicate_jobs": sum(n > 1 for n in jobs),
    }


async def replay(base_url: str, account: Account, agent_id: str, ids: list[str], keys: list[str]) -> int:
    """Send the first requests again with their keys; how many answered their own run as a replay."""
    same = 0
    async with httpx.AsyncClient(base_url=base_url, headers=account.headers, timeout=60) as http:
        for index, (run_id, key) in enumerate(zip(ids, keys, strict=True)):
            answer = await http.post(
                f"/api/agents/{agent_id}/runs",
                json={"input": run_input(index)},
                headers={"Idempotency-Key": key},
            )
            same += answer.json().get("id") == run_id and answer.headers.get("Idempotent-Replayed") == "true"
    return same


def measure(admin_url: str, args: argparse.Namespace) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="agentkeep-run-creation-"))
    with fresh_database(admin_url, "agentkeep_bench_create") as database_url:
        env = bench_env(database_url)
        with running_server(env, workers=args.serve_workers, workdir=folder) as server:
            account = register(server.base_url)
            agent_id = create_agent(server.base_url, account, "test")
            asyncio.run(create_runs(server.base_url, account, agent_id, 20, 10, first=10_000))  # warm-up
            postgres = asyncio.run(postmaster_pid(database_url))
            cpu_before = cpu_seconds(server.process.pid)
            postgres_before = cpu_seconds(postgres)
            client_before = time.process_time()
            statements_before = asyncio.run(statement_counts(database_url))
            with py_spy(server.process.pid, args.profile):
                url, count, clients = server.base_url, args.runs, args.clients
                if args.client == "raw":
                    creating = create_runs_raw(url, account.headers, agent_id, count, clients)
                else:
                    creating = create_runs(url, account, agent_id, count, clients)
                created = asyncio.run(creating)
            cpu = cpu_seconds(server.process.pid) - cpu_before
            postgres_cpu = cpu_seconds(postgres) - postgres_before
            client_cpu = time.process_time() - client_before
            statements = statement_delta(
                statements_before, asyncio.run(statement_counts(database_url)), top=14
            )
            jobs = asyncio.run(jobs_per_run(database_url))
            replays = args.replays and asyncio.run(
                replay(
                    server.base_url,
                    account,
                    agent_id,
                    created.ids[: args.replays],
                    created.keys[: args.replays],
                )
            )
            jobs_after = asyncio.run(jobs_per_run(database_url))
    return {
        "runs": args.runs,
        "clients": args.clients,
        "client": args.client,
        "serve_workers": args.serve_workers,
        "wall_s": round(created.seconds, 2),
        "per_s": round(args.runs / created.seconds, 1),
        "latency_ms": spread(created.latencies_ms),
        "statuses": created.statuses,
        "resent": created.resent,
        "serve_cpu_ms_per_creation": round(1000 * cpu / args.runs, 2),
        "postgres_cpu_ms_per_creation": round(1000 * postgres_cpu / args.runs, 2),
        "client_cpu_ms_per_creation": round(1000 * client_cpu / args.runs, 2),
        "statements_per_creation": round(int(statements["statements"]) / args.runs, 1),
        "top_statements_per_creation": [[round(n / args.runs, 2), q] for n, q in statements["top"]],
        "queue": jobs,
        "replays_answered_same_run": replays,
        "queue_after_replays": jobs_after,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--serve-workers", type=int, default=1)
    parser.add_argument("--replays", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--client",
        choices=("raw", "httpx"),
        default="raw",
        help="raw: bench/raw_client.py, lean enough that the wall time is the server's; "
        "httpx: the client of the first figures (its own CPU per request is the server's order)",
    )
    parser.add_argument("--profile", type=Path, help="py-spy the serve process during the creations")
    args = parser.parse_args()
    with private_postgres() as admin_url:
        for _ in range(args.repeat):
            print(json.dumps(measure(admin_url, args)), flush=True)
    if args.profile:
        print(summarise(args.profile))


if __name__ == "__main__":
    main()
