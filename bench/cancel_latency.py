"""Cancel latency: from `POST /api/runs/{id}/cancel` to the `cancelled` status event on the
run's event stream, for runs waiting on a slow model (issue 15).

    .venv/bin/python -m bench.cancel_latency [--runs 50] [--quiet-seconds 20] [--gap 0.2]

A private PostgreSQL cluster with pg_stat_statements (bench/scale.py), a fresh database,
Redis with its own key prefix, a real `agentkeep serve` and one `agentkeep worker`
(RUN_CONCURRENCY = `--runs`), and bench/fake_openai.py. The agent's model is
`openai:delay-600`: every run sits in its first model call. Once all runs are `running`,
one event stream per run is opened (bench/sse_client.py), and for `--quiet-seconds` the
statements PostgreSQL executes are counted (a per-run cancel poll would show here). Then the
runs are cancelled one at a time, `--gap` s apart: latency = the `cancelled` status event
received on the run's stream - the cancel request sent (client clock). Also reported: the
cancel request's own latency, and `finished_at - cancel_requested_at` from the runs table.
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

from bench.event_streams import idle_window
from bench.scale import bench_env, fake_model_server, fresh_database, private_postgres, sql, workers
from bench.scale_api import create_agent, create_runs, register, spread, status_counts
from bench.sse_client import open_streams
from tests.support.server import running_server


def measure(admin_url: str, args: argparse.Namespace) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="agentkeep-cancel-"))
    cancelled_at: dict[str, float] = {}
    seen: dict[str, asyncio.Event] = {}

    def on_event(run_id: str, _seq: int, kind: str, data: bytes, at: float) -> None:
        if kind == "status" and b'"cancelled"' in data:
            cancelled_at[run_id] = at
            seen[run_id].set()

    with fresh_database(admin_url, "agentkeep_bench_cancel") as database_url, fake_model_server() as model:
        env = bench_env(database_url, OPENAI_BASE_URL=model, RUN_CONCURRENCY=str(args.runs))
        with running_server(env, workdir=folder) as server:
            account = register(server.base_url)
            agent_id = create_agent(server.base_url, account, "openai:delay-600")
            with workers(env, 1, folder) as (worker,):

                async def phase() -> dict[str, Any]:
                    created = await create_runs(server.base_url, account, agent_id, args.runs, 10)
                    deadline = time.monotonic() + 120
                    while (await status_counts(database_url)).get("running", 0) < args.runs:
                        if time.monotonic() > deadline:
                            raise TimeoutError(await status_counts(database_url))
                        await asyncio.sleep(0.2)
                    for run_id in created.ids:
                        seen[run_id] = asyncio.Event()
                    opened = await open_streams(server.base_url, account.token, created.ids, on_event, 20)
                    await asyncio.sleep(2)
                    quiet = await idle_window(database_url, worker.pid, args.quiet_seconds, top=12)
                    quiet["worker_cpu_percent"] = quiet.pop("serve_cpu_percent")
                    latencies, request_ms = [], []
                    async with httpx.AsyncClient(base_url=server.base_url, headers=account.headers) as http:
                        await http.get("/api/agents?limit=1")  # a warm connection
                        for run_id in created.ids:
                            sent = time.time()
                            answer = await http.post(f"/api/runs/{run_id}/cancel")
                            request_ms.append(1000 * (time.time() - sent))
                            answer.raise_for_status()
                            await asyncio.wait_for(seen[run_id].wait(), 30)
                            latencies.append(1000 * (cancelled_at[run_id] - sent))
                            await asyncio.sleep(args.gap)
                    for stream in opened.streams:
                        stream.close()
                    rows = await sql(
                        database_url,
                        "SELECT status, extract(epoch FROM finished_at - cancel_requested_at) FROM runs "
                        "WHERE cancel_requested_at IS NOT NULL",
                    )
                    return {
                        "runs": args.runs,
                        "quiet_while_running": quiet,
                        "cancel_to_event_ms": spread(latencies),
                        "cancel_request_ms": spread(request_ms),
                        "requested_to_finished_ms": spread(
                            [1000 * float(s) for _, s in rows if s is not None]
                        ),
                        "statuses": {
                            status: sum(r[0] == status for r in rows) for status in {r[0] for r in rows}
                        },
                    }

                return asyncio.run(phase())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--quiet-seconds", type=float, default=20)
    parser.add_argument("--gap", type=float, default=0.2, help="seconds between two cancels")
    args = parser.parse_args()
    with private_postgres() as admin_url:
        print(json.dumps(measure(admin_url, args)), flush=True)


if __name__ == "__main__":
    main()
