"""1,000 runs started at once on one `agentkeep worker`, each making two calls to a local
OpenAI-compatible server that answers after 1 s (issue 15).

    .venv/bin/python -m bench.runs_at_scale [--runs 1000] [--delay 1.0] [--concurrency N]
        [--clients 50] [--profile worker-profile.txt]

A private PostgreSQL cluster (bench/scale.py), a fresh database, Redis with its own key
prefix; a real `agentkeep serve` and one `agentkeep worker` (RUN_CONCURRENCY: the largest
the settings accept unless given), and bench/fake_openai.py: each run's first model call is
answered (after the delay) with a call of `calculator`, the second with the text
`The answer is <result>.`, so every run is two model requests and one tool call.

After a warm-up of 3 runs, all runs are created through the API (`--clients` concurrent
requests, an Idempotency-Key each) while the worker runs. Reported:
- wall: first run created -> last run finished (runs table), against the floor of two
  model delays; the API's creation span; queue wait (started - created) and run time
  (finished - started) p50 / p99 / max;
- correctness: every run completed, output the expected text, 2 model requests, 1 attempt,
  the model server answered exactly 2 requests per run;
- the worker: the most PostgreSQL connections it held (pg_stat_activity matched to its
  sockets, polled every 0.25 s), by application_name; peak RSS (VmHWM); CPU seconds per run
  (its CPU over the phase / runs); log lines per run.

`--baseline-src DIR` (the `src` folder of another checkout) measures that checkout's worker
too, in turn with this one's in each round ("code": "this" / "baseline").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.profiling import py_spy, summarise
from bench.scale import (
    ConnectionWatch,
    bench_env,
    cpu_seconds,
    fake_model_server,
    fresh_database,
    model_requests_served,
    peak_rss_mib,
    postmaster_pid,
    private_postgres,
    run_concurrency_cap,
    statement_counts,
    statement_delta,
    workers,
)
from bench.scale_api import (
    create_agent,
    create_runs,
    expected_output,
    register,
    run_rows,
    spread,
    wait_terminal,
)
from tests.support.server import running_server

WARM_UP = 3


def measure(admin_url: str, args: argparse.Namespace, baseline: Path | None = None) -> dict[str, Any]:
    concurrency = args.concurrency or min(run_concurrency_cap(), args.runs)
    folder = Path(tempfile.mkdtemp(prefix="agentkeep-scale-"))
    with (
        fresh_database(admin_url, "agentkeep_bench_scale") as database_url,
        fake_model_server(args.delay) as model,
    ):
        env = bench_env(database_url, OPENAI_BASE_URL=model, RUN_CONCURRENCY=str(concurrency))
        database = database_url.rsplit("/", 1)[1]
        with running_server(env, workdir=folder) as server:
            account = register(server.base_url)
            agent_id = create_agent(server.base_url, account, "openai:bench")
            worker_env = env if baseline is None else {**env, "PYTHONPATH": str(baseline)}
            with workers(worker_env, 1, folder) as (worker,):
                asyncio.run(create_runs(server.base_url, account, agent_id, WARM_UP, 1, first=10_000))
                asyncio.run(wait_terminal(database_url, WARM_UP, 120))
                served_before = model_requests_served(model)
                statements_before = asyncio.run(statement_counts(database_url))
                postgres = asyncio.run(postmaster_pid(database_url))
                postgres_cpu = cpu_seconds(postgres)
                cpu_before, lines_before = cpu_seconds(worker.pid), worker.log_lines()

                async def phase() -> tuple[Any, ConnectionWatch, float]:
                    watch = ConnectionWatch(admin_url, database, worker.pid)
                    stop = asyncio.Event()
                    watching = asyncio.create_task(watch.run(stop))
                    started = time.monotonic()
                    created = await create_runs(server.base_url, account, agent_id, args.runs, args.clients)
                    seen = await wait_terminal(database_url, WARM_UP + args.runs, args.limit)
                    stop.set()
                    await watching
                    return created, watch, seen - started

                with py_spy(worker.pid, args.profile):
                    created, watch, client_wall = asyncio.run(phase())
                cpu = cpu_seconds(worker.pid) - cpu_before
                log_lines = worker.log_lines() - lines_before
                rss = peak_rss_mib(worker.pid)
                served = model_requests_served(model) - served_before
                postgres_cpu = cpu_seconds(postgres) - postgres_cpu
                rows = asyncio.run(run_rows(database_url))
                statements = statement_delta(
                    statements_before, asyncio.run(statement_counts(database_url)), top=12
                )
    wanted = set(created.ids)
    ours = [row for row in rows if str(row.id) in wanted]
    correct = sum(
        row.status == "completed"
        and row.output == expected_output(int(row.input.split()[2].split("*")[0]))
        and row.requests == 2
        for row in ours
    )
    first_created = min(row.created_at for row in ours)
    last_finished = max(row.finished_at for row in ours if row.finished_at is not None)
    wall = (last_finished - first_created).total_seconds()
    waits = [(row.started_at - row.created_at).total_seconds() for row in ours if row.started_at]
    durations = [
        (row.finished_at - row.started_at).total_seconds()
        for row in ours
        if row.finished_at and row.started_at
    ]
    return {
        "runs": args.runs,
        "run_concurrency": concurrency,
        "model_delay_s": args.delay,
        "wall_s": round(wall, 2),
        "floor_s": 2 * args.delay,
        "client_wall_s": round(client_wall, 2),
        "create_s": round(created.seconds, 2),
        "create_statuses": created.statuses,
        "completed_correctly": correct,
        "statuses": {
            status: sum(row.status == status for row in ours) for status in {row.status for row in ours}
        },
        "attempts_over_1": sum(row.attempts > 1 for row in ours),
        "model_requests": served,
        "queue_wait_s": spread(waits),
        "run_time_s": spread(durations),
        "worker_max_pg_connections": watch.peak_total,
        "worker_max_pg_connections_by_app": watch.peak_by_app,
        "worker_peak_rss_mib": rss,
        "worker_cpu_s": round(cpu, 2),
        "worker_cpu_ms_per_run": round(1000 * cpu / args.runs, 1),
        "worker_log_lines_per_run": round(log_lines / args.runs, 2),
        "postgres_cpu_ms_per_run": round(1000 * postgres_cpu / args.runs, 1),
        "statements_per_run": round(int(statements["statements"]) / args.runs, 1),
        "top_statements_per_run": [[round(n / args.runs, 2), q] for n, q in statements["top"]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--delay", type=float, default=1.0, help="seconds the model server waits per answer")
    parser.add_argument("--concurrency", type=int, default=0, help="RUN_CONCURRENCY (default: the cap)")
    parser.add_argument("--clients", type=int, default=50, help="concurrent run creations")
    parser.add_argument("--limit", type=float, default=600, help="give up after this many seconds")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--profile", type=Path, help="py-spy the worker during the phase (collapsed stacks)")
    parser.add_argument(
        "--baseline-src", type=Path, help="another checkout's src/: its worker measured in turn with this one"
    )
    args = parser.parse_args()
    with private_postgres() as admin_url:
        for _ in range(args.repeat):
            print(json.dumps({"code": "this", **measure(admin_url, args)}), flush=True)
            if args.baseline_src is not None:
                result = measure(admin_url, args, args.baseline_src.resolve())
                print(json.dumps({"code": "baseline", **result}), flush=True)
    if args.profile:
        print(summarise(args.profile))


if __name__ == "__main__":
    main()
