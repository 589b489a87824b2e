"""Shared parts of the scale benchmarks (issue 15): a private PostgreSQL cluster, real
`agentkeep serve` / `agentkeep worker` processes, and what is read about them from outside
(CPU and memory from /proc, PostgreSQL connections by process, statements executed).

The cluster is private so that it can keep what the shared server does not:
`pg_stat_statements` (statements per second), `track_commit_timestamp` (when an event row
was committed, to time its delivery) and enough `max_connections` that a worker asking for
hundreds of connections shows how many it takes instead of failing. fsync stays on.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from agentkeep.config import Settings
from tests.support.processes import clean_environment
from tests.support.throwaway import ThrowawayPostgres, _find, _processes_under, free_port

PASSWORD = "bench-password-" + secrets.token_hex(8)
REDIS_URL = "redis://127.0.0.1:6379/0"
TERMINAL = ("completed", "failed", "cancelled", "timed_out")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def run_concurrency_cap() -> int:
    """The largest RUN_CONCURRENCY the settings accept (read, so a lifted cap is used)."""
    for item in Settings.model_fields["run_concurrency"].metadata:
        if getattr(item, "le", None) is not None:
            return int(item.le)
    return 10_000


# --- PostgreSQL ---------------------------------------------------------------------------


class BenchPostgres(ThrowawayPostgres):
    """A private cluster: fsync on, pg_stat_statements, commit timestamps, many connections."""

    max_connections = 1200

    def start(self) -> None:
        pg_ctl = _find("pg_ctl")
        assert pg_ctl
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} "
            f"-c max_connections={self.max_connections} -c shared_buffers=256MB "
            "-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=top "
            "-c track_commit_timestamp=on"
        )
        self._run(pg_ctl, "-D", str(self.data), "-o", options, "-l", str(self.dir / "log"), "-w", "start")


@contextlib.contextmanager
def private_postgres() -> Iterator[str]:
    """Start a private cluster; yield its admin URL; destroy it afterwards."""
    cluster = BenchPostgres().init()
    try:
        cluster.start()
        yield cluster.url
    finally:
        cluster.destroy()


async def sql(url: str, statement: str, *arguments: object) -> list[Any]:
    """Run one statement on a fresh asyncpg connection (outside any transaction, so that it
    adds nothing but itself to the statistics it may be reading); the rows it returns."""
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    try:
        return list(await connection.fetch(statement, *arguments))
    finally:
        await connection.close()


@contextlib.contextmanager
def fresh_database(admin_url: str, prefix: str) -> Iterator[str]:
    """A new database on the cluster (pg_stat_statements installed), dropped afterwards."""
    name = f"{prefix}_{secrets.token_hex(5)}"
    asyncio.run(sql(admin_url, f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    asyncio.run(sql(url, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
    try:
        yield url
    finally:
        asyncio.run(sql(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def postmaster_pid(url: str) -> int:
    """The cluster's postmaster (on this host): its CPU with its backends' is PostgreSQL's."""
    rows = await sql(url, "SELECT setting FROM pg_settings WHERE name = 'data_directory'")
    return int((Path(rows[0][0]) / "postmaster.pid").read_text().split()[0])


@dataclass
class StatementCounts:
    """Statements executed in one database, from pg_stat_statements (this module's own
    reads of the statistics excluded)."""

    total: int
    by_query: dict[str, int]


async def statement_counts(database_url: str) -> StatementCounts:
    rows = await sql(
        database_url,
        "SELECT query, calls FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
        "WHERE d.datname = current_database() AND query NOT ILIKE '%pg_stat%' "
        "AND query NOT ILIKE '%pg_xact_commit_timestamp%'",
    )
    by_query: dict[str, int] = {}
    for query, calls in rows:
        key = " ".join(str(query).split())[:140]
        by_query[key] = by_query.get(key, 0) + int(calls)
    return StatementCounts(total=sum(by_query.values()), by_query=by_query)


def statement_delta(before: StatementCounts, after: StatementCounts, top: int = 6) -> dict[str, Any]:
    delta = {q: n - before.by_query.get(q, 0) for q, n in after.by_query.items()}
    busiest = sorted(((n, q) for q, n in delta.items() if n > 0), reverse=True)[:top]
    return {"statements": after.total - before.total, "top": [[n, q] for n, q in busiest], "by_query": delta}


async def xact_commits(database_url: str) -> int:
    rows = await sql(
        database_url,
        "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()",
    )
    return int(rows[0][0])


# --- processes ----------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU of `pid` and every process under it (0 for a process gone)."""
    total = 0
    for each in _processes_under(pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def peak_rss_mib(pid: int) -> float:
    """The peak resident memory (VmHWM) of `pid` and the processes under it, summed."""
    total = 0
    for each in _processes_under(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
    return round(total / 1024, 1)


def local_ports(pid: int) -> set[int]:
    """Local TCP ports of the sockets `pid` (and its children) hold: matched against
    pg_stat_activity.client_port, they say which backends serve that process."""
    inodes: set[str] = set()
    for each in _processes_under(pid):
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{each}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                if len(parts) > 9 and parts[9] in inodes:
                    ports.add(int(parts[1].rsplit(":", 1)[1], 16))
    return ports


async def connections_of(admin_url: str, database: str, pid: int) -> dict[str, int]:
    """PostgreSQL connections held by process `pid`, by application_name."""
    ports = local_ports(pid)
    rows = await sql(
        admin_url,
        "SELECT application_name, client_port FROM pg_stat_activity WHERE datname = $1",
        database,
    )
    counts: dict[str, int] = {}
    for app, port in rows:
        if port in ports:
            counts[app] = counts.get(app, 0) + 1
    return counts


@dataclass
class ConnectionWatch:
    """Polls the connections a process holds; keeps the maximum (total and per name)."""

    admin_url: str
    database: str
    pid: int
    interval: float = 0.25
    peak_total: int = 0
    peak_by_app: dict[str, int] = field(default_factory=dict)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(Exception):
                counts = await connections_of(self.admin_url, self.database, self.pid)
                self.peak_total = max(self.peak_total, sum(counts.values()))
                for app, count in counts.items():
                    self.peak_by_app[app] = max(self.peak_by_app.get(app, 0), count)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)


def bench_env(database_url: str, **extra: str) -> dict[str, str]:
    """Settings for serve and workers: production logging, Redis with its own prefix,
    rate limits out of the way of the load (the limiter still runs)."""
    return {
        "DATABASE_URL": database_url,
        "JWT_SECRET": secrets.token_urlsafe(48),
        "REDIS_URL": REDIS_URL,
        "REDIS_KEY_PREFIX": f"agentkeep-bench-{secrets.token_hex(4)}",
        "RUN_EXECUTION": "queue",
        "RATE_LIMIT_RUNS": "10000000/minute",
        "RATE_LIMIT_API": "10000000/minute",
        "RATE_LIMIT_AUTH": "1000/minute",
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
        **extra,
    }


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_lines(self) -> int:
        return self.log().count("\n")


@contextlib.contextmanager
def workers(env: dict[str, str], count: int, folder: Path) -> Iterator[list[Worker]]:
    """`count` real `agentkeep worker` processes, each ready (it logged `worker_started`)."""
    started = []
    for index in range(count):
        log_path = folder / f"worker-{index}-{secrets.token_hex(3)}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "agentkeep", "worker"],
                env=clean_environment(env),
                cwd=folder,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        started.append(Worker(process, log_path))
    try:
        deadline = time.monotonic() + 90
        for worker in started:
            while "worker_started" not in worker.log():
                if worker.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"worker did not start: {worker.log()[-3000:]}")
                time.sleep(0.1)
        time.sleep(1)  # procrastinate's worker starts fetching just after the log line
        yield started
    finally:
        for worker in started:
            with contextlib.suppress(ProcessLookupError):
                worker.process.send_signal(signal.SIGCONT)  # a paused worker must see its SIGTERM
            worker.process.terminate()
        for worker in started:
            try:
                worker.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait(timeout=5)


@contextlib.contextmanager
def fake_model_server(delay: float = 1.0) -> Iterator[str]:
    """bench/fake_openai.py in its own process; yields its OPENAI_BASE_URL."""
    port = free_port()
    log_path = Path(tempfile.gettempdir()) / f"agentkeep-fake-openai-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "uvicorn", "bench.fake_openai:create_app", "--factory",
                "--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop", "--http", "httptools",
                "--no-access-log", "--log-level", "warning", "--backlog", "4096",
                "--timeout-graceful-shutdown", "1",
            ],
            env={**os.environ, "FAKE_OPENAI_DELAY": str(delay)},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parent.parent,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/stats", timeout=1).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(log_path.read_text())
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        log_path.unlink(missing_ok=True)


def model_requests_served(base: str) -> int:
    return int(httpx.get(f"{base}/stats", timeout=5).json()["requests"])
