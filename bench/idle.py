"""Idle `agentkeep serve` and `agentkeep worker`: CPU and database statements while nothing
happens (issue 15).

    .venv/bin/python -m bench.idle [--seconds 30] [--settle 10] [--serve-workers 1]

A private PostgreSQL cluster with pg_stat_statements (bench/scale.py), a fresh database,
Redis with its own key prefix; a real `agentkeep serve` and one `agentkeep worker`, started
and given one run to execute (so every lazy part has started), then left alone for
`--settle` s. Over the next `--seconds`: each process's CPU (/proc, the serve process
with its uvicorn workers), as a share of one core, and the statements PostgreSQL executed
in the database (pg_stat_statements; the top ones listed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.scale import (
    bench_env,
    cpu_seconds,
    fresh_database,
    private_postgres,
    statement_counts,
    statement_delta,
    workers,
)
from bench.scale_api import create_agent, create_runs, register, wait_terminal
from tests.support.server import running_server


def measure(admin_url: str, args: argparse.Namespace) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="agentkeep-idle-"))
    with fresh_database(admin_url, "agentkeep_bench_idle") as database_url:
        env = bench_env(database_url)
        with running_server(env, workers=args.serve_workers, workdir=folder) as server:
            account = register(server.base_url)
            agent_id = create_agent(server.base_url, account, "test")
            with workers(env, 1, folder) as (worker,):
                asyncio.run(create_runs(server.base_url, account, agent_id, 1, 1))
                asyncio.run(wait_terminal(database_url, 1, 60))
                time.sleep(args.settle)
                serve_pid = server.process.pid
                before = asyncio.run(statement_counts(database_url))
                serve_cpu, worker_cpu, started = (
                    cpu_seconds(serve_pid),
                    cpu_seconds(worker.pid),
                    time.monotonic(),
                )
                time.sleep(args.seconds)
                elapsed = time.monotonic() - started
                serve_cpu, worker_cpu = (
                    cpu_seconds(serve_pid) - serve_cpu,
                    cpu_seconds(worker.pid) - worker_cpu,
                )
                delta = statement_delta(before, asyncio.run(statement_counts(database_url)), top=8)
    return {
        "seconds": round(elapsed, 1),
        "serve_workers": args.serve_workers,
        "serve_cpu_percent": round(100 * serve_cpu / elapsed, 2),
        "worker_cpu_percent": round(100 * worker_cpu / elapsed, 2),
        "statements_per_s": round(int(delta["statements"]) / elapsed, 2),
        "top_statements": delta["top"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--settle", type=float, default=10)
    parser.add_argument("--serve-workers", type=int, default=1)
    args = parser.parse_args()
    with private_postgres() as admin_url:
        print(json.dumps(measure(admin_url, args)), flush=True)


if __name__ == "__main__":
    main()
