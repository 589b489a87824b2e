"""A 50-turn thread on PostgreSQL: dispatch latency, turn latency and history loading per turn.

    .venv/bin/python -m bench.threads [--turns 50] [--repetitions 3] [--tool-every 3]
        [--postgres-admin postgresql+asyncpg://postgres@127.0.0.1:5432/postgres | --private-postgres]

Each repetition creates a fresh database, migrates it (`agentkeep migrate`), starts a real
`agentkeep serve` and one `agentkeep worker` on loopback (runs go through the procrastinate
queue, as in production on PostgreSQL), registers a user, creates an agent on the offline
`test` model with the calculator, warms the worker up on a separate thread, then runs one
thread of `--turns` turns, one at a time: every `--tool-every`-th turn asks for arithmetic (a
calculator call: four history messages), the others are echoed (two messages). Each turn is
posted, its event stream read to the final status, and its run row read back.

Per turn:
- dispatch: `runs.started_at - runs.created_at`. `created_at` is stamped by the API in the
  transaction that queues the turn (before the 202); `started_at` by the worker in the
  transaction that claims the run and appends its `running` status event. It covers the
  commit, the job queue's notification, the worker fetching the job and the claim (which
  checks that every earlier turn of the thread has finished); not the history load, which
  follows the claim.
- turn: `runs.finished_at - runs.created_at` (dispatch, history load, the agent loop, and
  the outcome's transaction that also writes the turn's messages).
- client: from sending the POST to receiving the final status event over the stream (the
  stream polls every 0.25 s, so this is quantized).
- history load, bench process: just before the turn is posted, the history the worker will
  load (every message of the earlier turns) is loaded here from the same database with the
  product's own `ThreadHistory.load` on an engine built like the worker's; median of 5.
  Reported: rows returned, the query alone (execute and fetch), and the whole load (with
  pydantic-ai's validation of the stored messages).
- history load, worker: with `--private-postgres` the benchmark starts its own PostgreSQL
  cluster with `pg_stat_statements` loaded and reads the worker's own history query per
  turn (rows and server execution time, as deltas of the statement's counters). The shared
  server is used otherwise, and this column stays empty unless it preloads the extension.

Figures are medians over the repetitions, per turn number.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from agentkeep.config import Settings
from agentkeep.db.engine import create_engine, create_sessionmaker
from agentkeep.threads.history import ThreadHistory
from agentkeep.threads.models import ThreadMessage
from bench.runs_throughput import setup, workers
from tests.support.server import running_server
from tests.support.throwaway import ThrowawayPostgres, _find

SHARED_ADMIN = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
TERMINAL = {"completed", "failed", "cancelled", "timed_out"}
PROBES = 5
# The worker's history statement as SQLAlchemy renders it (ThreadHistory.load).
# SQLAlchemy breaks lines between clauses, hence the wildcards.
HISTORY_QUERY = (
    "SELECT thread_messages.message%FROM thread_messages%"
    "WHERE thread_messages.thread_id = %ORDER BY thread_messages.seq%"
)


class StatsPostgres(ThrowawayPostgres):
    """A private cluster with pg_stat_statements preloaded and durable commits (fsync on)."""

    def start(self) -> None:
        pg_ctl = _find("pg_ctl")
        assert pg_ctl
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} "
            "-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all"
        )
        self._run(pg_ctl, "-D", str(self.data), "-o", options, "-l", str(self.dir / "log"), "-w", "start")


async def admin(admin_url: str, statement: str) -> None:
    engine = create_async_engine(admin_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


@contextlib.contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    name = f"agentkeep_bench_threads_{secrets.token_hex(6)}"
    asyncio.run(admin(admin_url, f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


class Probe:
    """Loads a thread's history in this process the way the worker does, and reads the
    worker's own history query from pg_stat_statements when the server keeps it."""

    def __init__(self, database_url: str, admin_url: str) -> None:
        settings = Settings(_env_file=None, database_url=database_url, jwt_secret=secrets.token_urlsafe(48))
        self.engine = create_engine(settings)
        self.sessionmaker = create_sessionmaker(engine=self.engine)
        self.admin: AsyncEngine = create_async_engine(admin_url, poolclass=NullPool)
        self.database = make_url(database_url).database
        self.statements = False

    async def open(self) -> None:
        async with self.admin.connect() as connection:
            preload = await connection.scalar(text("SHOW shared_preload_libraries"))
            if "pg_stat_statements" in str(preload):
                await connection.execute(text("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
                await connection.commit()
                self.statements = True

    async def close(self) -> None:
        await self.engine.dispose()
        await self.admin.dispose()

    async def load(self, thread_id: uuid.UUID) -> dict[str, float]:
        rows, query_ms, load_ms = 0, [], []
        statement = select(ThreadMessage.message).where(ThreadMessage.thread_id == thread_id)
        for _ in range(PROBES):
            async with self.sessionmaker() as session:
                start = time.perf_counter()
                rows = len((await session.scalars(statement.order_by(ThreadMessage.seq))).all())
                query_ms.append((time.perf_counter() - start) * 1000)
            async with self.sessionmaker() as session:
                start = time.perf_counter()
                messages = await ThreadHistory(session, thread_id).load()
                load_ms.append((time.perf_counter() - start) * 1000)
            assert len(messages) == rows
        return {
            "rows": rows,
            "query_ms": statistics.median(query_ms),
            "load_ms": statistics.median(load_ms),
        }

    async def worker_counters(self) -> tuple[int, int, float] | None:
        """(calls, rows, total execution ms) of the history statement in the bench database."""
        if not self.statements:
            return None
        async with self.admin.connect() as connection:
            row = (
                await connection.execute(
                    text(
                        "SELECT coalesce(sum(s.calls), 0), coalesce(sum(s.rows), 0), "
                        "coalesce(sum(s.total_exec_time), 0) FROM pg_stat_statements s "
                        "JOIN pg_database d ON d.oid = s.dbid "
                        "WHERE d.datname = :name AND s.query LIKE :query"
                    ),
                    {"name": self.database, "query": HISTORY_QUERY},
                )
            ).one()
        return int(row[0]), int(row[1]), float(row[2])


def turn_input(number: int, tool_every: int) -> str:
    if number % tool_every == 0:
        return f"Turn {number}: what is {number}*7+1?"
    return f"Turn {number}: please remember the word tangerine-{number}."


async def take_turn(http: httpx.AsyncClient, thread_id: str, words: str) -> tuple[str, float]:
    """Post a turn and follow its events to the final status; (run id, client ms)."""
    start = time.perf_counter()
    posted = await http.post(f"/api/threads/{thread_id}/runs", json={"input": words})
    posted.raise_for_status()
    run_id = str(posted.json()["id"])
    status = None
    async with http.stream("GET", f"/api/runs/{run_id}/events") as stream:
        async for line in stream.aiter_lines():
            if line.startswith("data:") and '"status"' in line:
                status = json.loads(line[5:]).get("status")
    if status not in TERMINAL:
        raise RuntimeError(f"turn {run_id} ended its stream without a final status ({status})")
    return run_id, (time.perf_counter() - start) * 1000


async def run_row(probe: Probe, run_id: str) -> dict[str, Any]:
    async with probe.engine.connect() as connection:
        row = (
            await connection.execute(
                text("SELECT status, created_at, started_at, finished_at FROM runs WHERE id = :id"),
                {"id": uuid.UUID(run_id)},
            )
        ).one()
    return {
        "status": row.status,
        "dispatch_ms": (row.started_at - row.created_at).total_seconds() * 1000,
        "turn_ms": (row.finished_at - row.created_at).total_seconds() * 1000,
    }


async def conversation(
    base_url: str, headers: dict[str, str], agent_id: str, probe: Probe, turns: int, tool_every: int
) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=120) as http:
        warm = (await http.post("/api/threads", json={"agent_id": agent_id})).json()["id"]
        for number in range(1, 4):
            await take_turn(http, warm, turn_input(number, tool_every))
        thread_id = (await http.post("/api/threads", json={"agent_id": agent_id})).json()["id"]
        results = []
        for number in range(1, turns + 1):
            history = await probe.load(uuid.UUID(thread_id))
            before = await probe.worker_counters()
            run_id, client_ms = await take_turn(http, thread_id, turn_input(number, tool_every))
            row = await run_row(probe, run_id)
            if row["status"] != "completed":
                raise RuntimeError(f"turn {number} ended {row['status']}")
            result = {"turn": number, **row, "client_ms": client_ms, **history}
            after = await probe.worker_counters()
            if before is not None and after is not None:
                if after[0] == before[0]:
                    raise RuntimeError("pg_stat_statements did not see the worker's history query")
                result["worker_calls"] = after[0] - before[0]
                result["worker_rows"] = after[1] - before[1]
                result["worker_exec_ms"] = after[2] - before[2]
            results.append(result)
        # The whole history reached the model: turn 1 is recalled after the last turn.
        run_id, _ = await take_turn(http, thread_id, "#recall")
        output = (await http.get(f"/api/runs/{run_id}")).json()["output"]
        if not output.startswith("recall: 1. " + turn_input(1, tool_every)):
            raise RuntimeError(f"the last turn did not see the first: {output[:200]}")
        return results


def repetition(admin_url: str, turns: int, tool_every: int) -> list[dict[str, Any]]:
    with fresh_database(admin_url) as database_url:
        folder = Path(tempfile.mkdtemp(prefix="agentkeep-threads-bench-"))
        env = {
            "DATABASE_URL": database_url,
            "JWT_SECRET": secrets.token_urlsafe(48),
            "RUN_EXECUTION": "queue",
            "RATE_LIMIT_RUNS": "1000000/minute",
            "RATE_LIMIT_API": "1000000/minute",
            "LOG_LEVEL": "WARNING",
        }
        with running_server(env, workdir=folder) as server:
            headers, agent_id = setup(server.base_url)
            with workers(env, 1, folder):
                probe = Probe(database_url, admin_url)

                async def measured() -> list[dict[str, Any]]:
                    try:
                        await probe.open()
                        return await conversation(
                            server.base_url, headers, agent_id, probe, turns, tool_every
                        )
                    finally:
                        await probe.close()

                return asyncio.run(measured())


def median_of(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [row[key] for row in rows if key in row]
    return statistics.median(values) if values else None


def report(runs: list[list[dict[str, Any]]], turns: int) -> None:
    keys = (
        *("dispatch_ms", "turn_ms", "client_ms"),
        *("rows", "query_ms", "load_ms", "worker_rows", "worker_exec_ms"),
    )
    per_turn = {n: {k: median_of([run[n - 1] for run in runs], k) for k in keys} for n in range(1, turns + 1)}
    shown = sorted({1, 2, 3, 5, 10, 20, 30, 40, turns - 1, turns} & set(per_turn))
    print(
        "| turn | dispatch ms | turn ms | client ms | history rows | query ms | load ms "
        "| worker rows | worker exec ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for n in shown:
        cells = [_cell(per_turn[n][k]) for k in keys]
        print(f"| {n} | " + " | ".join(cells) + " |")
    first, last = per_turn[1]["dispatch_ms"], per_turn[turns]["dispatch_ms"]
    if first is None or last is None:
        raise RuntimeError("no dispatch figures")
    head = statistics.median(row["dispatch_ms"] for run in runs for row in run[:5])
    tail = statistics.median(row["dispatch_ms"] for run in runs for row in run[-5:])
    everything = [row["dispatch_ms"] for run in runs for row in run]
    for low in range(0, turns, 10):
        rows = [row for run in runs for row in run[low : low + 10]]
        print(
            f"turns {low + 1}-{min(low + 10, turns)}: dispatch median "
            f"{statistics.median(row['dispatch_ms'] for row in rows):.1f} ms, turn median "
            f"{statistics.median(row['turn_ms'] for row in rows):.1f} ms"
        )
    print(f"dispatch turn {turns} / turn 1 (medians): {last / first:.2f}x ({last:.1f} / {first:.1f} ms)")
    print(f"dispatch last 5 / first 5 turns (medians): {tail / head:.2f}x ({tail:.1f} / {head:.1f} ms)")
    print(
        f"dispatch over all turns: median {statistics.median(everything):.1f} ms, "
        f"max {max(everything):.1f} ms"
    )


def _cell(value: float | None) -> str:
    if value is None:
        return "-"
    if float(value).is_integer() or value >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}" if value >= 1 else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--turns", type=int, default=50)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--tool-every", type=int, default=3, help="every n-th turn calls the calculator")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--postgres-admin", default=SHARED_ADMIN, help="a server to create the databases on")
    where.add_argument("--private-postgres", action="store_true", help="own cluster with pg_stat_statements")
    parser.add_argument("--json", type=Path, help="also write every turn's figures here")
    args = parser.parse_args()
    runs: list[list[dict[str, Any]]] = []
    with contextlib.ExitStack() as stack:
        admin_url = args.postgres_admin
        if args.private_postgres:
            cluster = StatsPostgres().init()
            stack.callback(cluster.destroy)
            cluster.start()
            admin_url = cluster.url
        for index in range(args.repetitions):
            started = time.monotonic()
            runs.append(repetition(admin_url, args.turns, args.tool_every))
            print(f"repetition {index + 1}: {time.monotonic() - started:.0f} s", flush=True)
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))
    report(runs, args.turns)


if __name__ == "__main__":
    main()
