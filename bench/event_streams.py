"""1,000 event streams open on one `agentkeep serve` process: what they cost while nothing
happens, and how fast they deliver once runs append events (issue 15).

    .venv/bin/python -m bench.event_streams [--streams 1000] [--idle-seconds 30]
        [--event-seconds 30] [--event-concurrency 100] [--delay 1.0] [--open-concurrency 50]

A private PostgreSQL cluster with pg_stat_statements and track_commit_timestamp
(bench/scale.py), a fresh database, Redis with its own key prefix, a real `agentkeep serve`
(one process, MAX_REQUESTS_IN_FLIGHT at its default) and bench/fake_openai.py.

1. `--streams` runs are created through the API with no worker running: they stay queued.
2. One stream per run is opened (`GET /api/runs/{id}/events`, bench/sse_client.py), at most
   `--open-concurrency` being opened at once (opening is a request; the bound keeps it
   under MAX_REQUESTS_IN_FLIGHT, and a 503 would be retried and counted).
3. Idle: after 5 s, for `--idle-seconds`, the statements PostgreSQL executed in the
   database (pg_stat_statements; the top ones listed), its transactions, and serve's CPU.
4. Events: one `agentkeep worker` (RUN_CONCURRENCY `--event-concurrency`) starts executing
   the runs (two model calls of `--delay` s and a calculator call each, ten events) for
   `--event-seconds`. For every event a stream received, latency = the time its last byte
   arrived (client wall clock) - the commit timestamp of its row
   (`pg_xact_commit_timestamp(xmin)`). Reported p50 / p90 / p99 / max, events/s, serve CPU
   and the statements executed meanwhile.
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
    fake_model_server,
    fresh_database,
    private_postgres,
    sql,
    statement_counts,
    statement_delta,
    workers,
    xact_commits,
)
from bench.scale_api import create_agent, create_runs, percentile, register
from bench.sse_client import open_streams
from tests.support.server import running_server

# What an event stream reads (agentkeep.runs.stream): its run's events, and its status.
STREAM_READS = ("SELECT run_events.run_id, run_events.seq", "SELECT runs.status FROM runs WHERE runs.org_id")


async def idle_window(database_url: str, serve_pid: int, seconds: float, top: int = 6) -> dict[str, Any]:
    before, xacts, cpu = (
        await statement_counts(database_url),
        await xact_commits(database_url),
        cpu_seconds(serve_pid),
    )
    started = time.monotonic()
    await asyncio.sleep(seconds)
    elapsed = time.monotonic() - started
    after, xacts_after, cpu_after = (
        await statement_counts(database_url),
        await xact_commits(database_url),
        cpu_seconds(serve_pid),
    )
    delta = statement_delta(before, after, top)
    return {
        "seconds": round(elapsed, 1),
        "statements_per_s": round(delta["statements"] / elapsed, 2),
        "transactions_per_s": round((xacts_after - xacts) / elapsed, 2),
        "serve_cpu_percent": round(100 * (cpu_after - cpu) / elapsed, 2),
        "stream_reads_per_s": round(
            sum(n for q, n in delta["by_query"].items() if q.startswith(STREAM_READS)) / elapsed, 2
        ),
        "top_statements": delta["top"],
    }


async def commit_times(database_url: str) -> dict[tuple[str, int], float]:
    rows = await sql(
        database_url,
        "SELECT run_id::text, seq, extract(epoch FROM pg_xact_commit_timestamp(xmin)) FROM run_events",
    )
    return {(run_id, int(seq)): float(at) for run_id, seq, at in rows if at is not None}


def measure(admin_url: str, args: argparse.Namespace) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="agentkeep-streams-"))
    received: list[tuple[str, int, str, float]] = []

    def on_event(run_id: str, seq: int, kind: str, _data: bytes, at: float) -> None:
        received.append((run_id, seq, kind, at))

    with (
        fresh_database(admin_url, "agentkeep_bench_streams") as database_url,
        fake_model_server(args.delay) as model,
    ):
        env = bench_env(database_url, OPENAI_BASE_URL=model, RUN_CONCURRENCY=str(args.event_concurrency))
        with running_server(env, workdir=folder) as server:
            account = register(server.base_url)
            agent_id = create_agent(server.base_url, account, "openai:bench")
            created = asyncio.run(create_runs(server.base_url, account, agent_id, args.streams, 50))
            pid = server.process.pid

            async def phases() -> dict[str, Any]:
                opened = await open_streams(
                    server.base_url, account.token, created.ids, on_event, args.open_concurrency
                )
                await asyncio.sleep(5)
                result: dict[str, Any] = {
                    "opened": len(opened.streams),
                    "open_s": round(opened.seconds, 2),
                    "open_refused": opened.refused,
                    "idle": await idle_window(database_url, pid, args.idle_seconds),
                }
                # The worker starts and stops in a thread: this loop keeps reading the streams.
                running = workers(env, 1, folder)
                window["start"] = time.time()
                await asyncio.to_thread(running.__enter__)
                window["ready"] = time.time()
                result["events"] = await idle_window(database_url, pid, args.event_seconds)
                window["stop"] = time.time()
                await asyncio.to_thread(running.__exit__, None, None, None)
                await asyncio.sleep(2)  # the last deliveries
                window["commits"] = await commit_times(database_url)
                result["streams_ended"] = sum(stream.ended for stream in opened.streams)
                for stream in opened.streams:
                    stream.close()
                return result

            window: dict[str, Any] = {}
            result = asyncio.run(phases())
    events_started, events_stopped, commits = window["start"], window["stop"], window["commits"]
    live = [(run_id, seq, at) for run_id, seq, _kind, at in received if at >= events_started]
    latencies = [1000 * (at - commits[(run_id, seq)]) for run_id, seq, at in live if (run_id, seq) in commits]
    ready = window["ready"]
    seen = {(run_id, seq) for run_id, seq, _at in live}
    committed_in_window = sum(ready <= at <= events_stopped for at in commits.values())
    result["events"].update(
        {
            "events_committed": committed_in_window,
            "events_committed_per_s": round(committed_in_window / (events_stopped - ready), 1),
            "events_received": len(live),
            "committed_not_received": len(
                {key for key, at in commits.items() if at >= events_started} - seen
            ),
            "commit_to_client_ms": {
                "p50": round(percentile(latencies, 0.5), 1),
                "p90": round(percentile(latencies, 0.9), 1),
                "p99": round(percentile(latencies, 0.99), 1),
                "max": round(max(latencies, default=float("nan")), 1),
            },
        }
    )
    return {"streams": args.streams, **result}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--open-concurrency", type=int, default=50)
    parser.add_argument("--idle-seconds", type=float, default=30)
    parser.add_argument("--event-seconds", type=float, default=30)
    parser.add_argument("--event-concurrency", type=int, default=100, help="the worker's RUN_CONCURRENCY")
    parser.add_argument("--delay", type=float, default=1.0, help="seconds the model server waits per answer")
    args = parser.parse_args()
    with private_postgres() as admin_url:
        print(json.dumps(measure(admin_url, args)), flush=True)


if __name__ == "__main__":
    main()
