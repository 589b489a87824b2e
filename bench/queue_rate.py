"""Runs per second through the queue with the offline `test` model, 1 and 2 workers, and
worker CPU per run (issue 15).

    .venv/bin/python -m bench.queue_rate [--runs 1000] [--workers 1 2] [--concurrency N]
        [--repeat 1] [--profile worker-profile.txt]

A private PostgreSQL cluster (bench/scale.py), a fresh database per measurement, Redis with
its own key prefix, a real `agentkeep serve` and real `agentkeep worker` processes. One agent
on the `test` model with the calculator: each run is two model requests and one tool call,
ten events.

The queue is filled first and then drained, so the rate is the workers' and not the API's:
the workers start, warm up on 3 runs and are paused (SIGSTOP); `--runs` runs are created
through the API (50 concurrent, an Idempotency-Key each); the workers resume (SIGCONT).
runs/s = runs / (last finished - first started), from the runs table. Worker CPU per run =
the workers' CPU (/proc, summed) between the pause and the last run finishing / runs.
RUN_CONCURRENCY is the product default unless `--concurrency` is given.

`--baseline-src DIR` (the `src` folder of another checkout) measures that checkout's workers
too, alternating with this one's in each round, so both see the same load on a shared host.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import tempfile
from pathlib import Path
from typing import Any

from agentkeep.config import Settings
from bench.profiling import py_spy, summarise
from bench.scale import (
    bench_env,
    cpu_seconds,
    fresh_database,
    postmaster_pid,
    private_postgres,
    statement_counts,
    statement_delta,
    workers,
)
from bench.scale_api import create_agent, create_runs, register, run_rows, spread, wait_terminal
from tests.support.server import running_server

WARM_UP = 3


def measure(
    admin_url: str, count: int, args: argparse.Namespace, baseline: Path | None = None
) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="agentkeep-queue-rate-"))
    extra = {"RUN_CONCURRENCY": str(args.concurrency)} if args.concurrency else {}
    concurrency = args.concurrency or Settings.model_fields["run_concurrency"].default
    with fresh_database(admin_url, "agentkeep_bench_queue") as database_url:
        env = bench_env(database_url, **extra)
        with running_server(env, workdir=folder) as server:
            account = register(server.base_url)
            agent_id = create_agent(server.base_url, account, "test")
            worker_env = env if baseline is None else {**env, "PYTHONPATH": str(baseline)}
            with workers(worker_env, count, folder) as started:
                asyncio.run(create_runs(server.base_url, account, agent_id, WARM_UP, 1, first=10_000))
                asyncio.run(wait_terminal(database_url, WARM_UP, 120))
                for worker in started:
                    worker.process.send_signal(signal.SIGSTOP)
                cpu_before = sum(cpu_seconds(worker.pid) for worker in started)
                lines_before = sum(worker.log_lines() for worker in started)
                created = asyncio.run(create_runs(server.base_url, account, agent_id, args.runs, 50))
                statements_before = asyncio.run(statement_counts(database_url))
                postgres = asyncio.run(postmaster_pid(database_url))
                postgres_cpu = cpu_seconds(postgres)
                with py_spy(started[0].pid, args.profile):
                    for worker in started:
                        worker.process.send_signal(signal.SIGCONT)
                    asyncio.run(wait_terminal(database_url, WARM_UP + args.runs, args.limit, interval=0.1))
                cpu = sum(cpu_seconds(worker.pid) for worker in started) - cpu_before
                log_lines = sum(worker.log_lines() for worker in started) - lines_before
                postgres_cpu = cpu_seconds(postgres) - postgres_cpu
                rows = asyncio.run(run_rows(database_url))
                statements = statement_delta(
                    statements_before, asyncio.run(statement_counts(database_url)), top=args.top
                )
    wanted = set(created.ids)
    ours = [row for row in rows if str(row.id) in wanted]
    first_started = min(row.started_at for row in ours if row.started_at)
    last_finished = max(row.finished_at for row in ours if row.finished_at)
    seconds = (last_finished - first_started).total_seconds()
    durations = [
        (row.finished_at - row.started_at).total_seconds()
        for row in ours
        if row.finished_at and row.started_at
    ]
    return {
        "code": "baseline" if baseline is not None else "this",
        "workers": count,
        "run_concurrency": concurrency,
        "runs": args.runs,
        "completed": sum(row.status == "completed" and row.requests == 2 for row in ours),
        "attempts_over_1": sum(row.attempts > 1 for row in ours),
        "drain_s": round(seconds, 2),
        "runs_per_s": round(args.runs / seconds, 1),
        "run_time_s": spread(durations),
        "worker_cpu_ms_per_run": round(1000 * cpu / args.runs, 1),
        "worker_log_lines_per_run": round(log_lines / args.runs, 2),
        "api_create_s": round(created.seconds, 2),
        "postgres_cpu_ms_per_run": round(1000 * postgres_cpu / args.runs, 1),
        "statements_per_run": round(int(statements["statements"]) / args.runs, 1),
        "top_statements_per_run": [[round(n / args.runs, 2), q] for n, q in statements["top"]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--concurrency", type=int, default=0, help="RUN_CONCURRENCY (default: the product's)")
    parser.add_argument("--repeat", type=int, default=1, help="alternating rounds per worker count")
    parser.add_argument("--limit", type=float, default=600)
    parser.add_argument("--profile", type=Path, help="py-spy the first worker while the queue drains")
    parser.add_argument("--top", type=int, default=12, help="statements listed per measurement")
    parser.add_argument(
        "--baseline-src", type=Path, help="another checkout's src/: its workers measured in turn with these"
    )
    args = parser.parse_args()
    with private_postgres() as admin_url:
        for _ in range(args.repeat):
            for count in args.workers:
                print(json.dumps(measure(admin_url, count, args)), flush=True)
                if args.baseline_src is not None:
                    print(
                        json.dumps(measure(admin_url, count, args, args.baseline_src.resolve())), flush=True
                    )
    if args.profile:
        print(summarise(args.profile))


if __name__ == "__main__":
    main()
