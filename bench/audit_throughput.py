"""Audited vs unaudited write throughput on PostgreSQL, side by side in one run.

Each simulated request does some work outside the database (`--think-ms`, standing in for
password hashing, validation and network I/O), then one transaction that inserts a user row
and, when audited, its audit record (unsealed: no chain lock). A background sealer, as in
the app, chains the records after commit; its lag (record timestamp to sealing commit) is
reported. Modes alternate in short rounds so machine noise hits all of them alike; between
rounds the sealer drains its backlog so no round pays for another's records.

    python bench/audit_throughput.py [--database-url URL] [--concurrency 20] [--rounds 6]

Without --database-url it creates (and afterwards drops) a scratch database on the server
named by BENCH_ADMIN_URL (default postgresql+asyncpg://postgres@127.0.0.1:5432/postgres).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

from agentkeep.audit.actions import AuditAction
from agentkeep.audit.commit_signal import attach_commit_signal
from agentkeep.audit.sealing import SEAL_POLL_SECONDS, AuditSealer, seal_pending
from agentkeep.audit.service import record
from agentkeep.audit.verify import verify_chain
from agentkeep.config import load_settings
from agentkeep.context import RequestContext
from agentkeep.db.base import utcnow
from agentkeep.db.engine import create_engine, create_sessionmaker
from agentkeep.db.migrate import upgrade
from agentkeep.observability.logging import configure_logging
from agentkeep.users.models import User

ADMIN_URL = os.environ.get("BENCH_ADMIN_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
CHAINS = 8
CHAIN_NAMES = ["global", *(f"org-{index}" for index in range(CHAINS))]
MODES = ("unaudited", "audited", "audited-chains")
CONTEXT = RequestContext(request_id="bench", ip_address="203.0.113.5", user_agent="bench/1")


@dataclass
class Round:
    mode: str
    requests: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds


class LagMeter:
    """Collects the sealing lag of each sealed record into the round running at the time."""

    def __init__(self) -> None:
        self.into: list[float] = []

    def __call__(self, stamps: Sequence[datetime]) -> None:
        now = utcnow()
        self.into.extend((now - stamp).total_seconds() for stamp in stamps)


async def _request(sessionmaker: async_sessionmaker[AsyncSession], mode: str, think: float) -> float:
    started = time.perf_counter()
    await asyncio.sleep(think)
    name = uuid.uuid4().hex[:20]
    async with sessionmaker() as session, session.begin():
        user = User(id=uuid.uuid4(), username=name, email=f"{name}@example.com", password_hash="x" * 60)
        session.add(user)
        if mode != "unaudited":
            # "audited-chains": one chain per organization (8 here) instead of one global chain.
            chain = f"org-{user.id.int % CHAINS}" if mode == "audited-chains" else "global"
            await record(
                session,
                AuditAction.USER_REGISTERED,
                context=CONTEXT,
                user_id=user.id,
                resource_type="user",
                resource_id=user.id,
                details={"username": name},
                chain=chain,
            )
        else:
            await session.flush()
    return time.perf_counter() - started


async def _round(
    sessionmaker: async_sessionmaker[AsyncSession],
    lag: LagMeter,
    mode: str,
    concurrency: int,
    seconds: float,
    think: float,
) -> Round:
    result = Round(mode)
    lag.into = result.lags
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            result.latencies.append(await _request(sessionmaker, mode, think))

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.seconds = time.perf_counter() - started
    result.cpu_seconds = time.process_time() - cpu
    result.requests = len(result.latencies)
    # Untimed: let the background sealer finish this round's records before the next round.
    while await _unsealed(sessionmaker):  # noqa: ASYNC110 - polling the database, not local state
        await asyncio.sleep(0.01)
    return result


async def _unsealed(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(text("SELECT count(*) FROM audit_logs WHERE sequence IS NULL")) or 0)


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


@dataclass
class Summary:
    throughput: float  # median over rounds
    p50: float
    p95: float
    cpu_ms: float  # process CPU per request, median over rounds
    lag_p50: float | None
    lag_p99: float | None


def _summary(rounds: list[Round], mode: str) -> Summary:
    chosen = [r for r in rounds if r.mode == mode]
    latencies = [latency for r in chosen for latency in r.latencies]
    lags = [value for r in chosen for value in r.lags]
    return Summary(
        throughput=statistics.median(r.throughput for r in chosen),
        p50=statistics.median(latencies) * 1000,
        p95=_percentile(latencies, 0.95) * 1000,
        cpu_ms=statistics.median(r.cpu_seconds / r.requests * 1000 for r in chosen),
        lag_p50=statistics.median(lags) * 1000 if lags else None,
        lag_p99=_percentile(lags, 0.99) * 1000 if lags else None,
    )


def _paired_cost(rounds: list[Round], mode: str) -> float:
    """Median over round indexes of (1 - audited / unaudited), each pair run back to back."""
    base = [r.throughput for r in rounds if r.mode == "unaudited"]
    other = [r.throughput for r in rounds if r.mode == mode]
    return statistics.median((1 - o / b) * 100 for o, b in zip(other, base, strict=True))


async def _create_database() -> str:
    name = f"agentkeep_bench_{secrets.token_hex(4)}"
    engine = create_async_engine(ADMIN_URL, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    async with engine.connect() as connection:
        await connection.execute(text(f'CREATE DATABASE "{name}"'))
    await engine.dispose()
    return make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)


async def _drop_database(url: str) -> None:
    engine = create_async_engine(ADMIN_URL, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    async with engine.connect() as connection:
        await connection.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    await engine.dispose()


async def main(args: argparse.Namespace) -> None:
    configure_logging("WARNING")
    url = args.database_url or await _create_database()
    try:
        await asyncio.to_thread(upgrade, url)
        settings = load_settings(
            _env_file=None,
            jwt_secret=secrets.token_urlsafe(48),
            database_url=url,
            db_pool_size=args.concurrency,
            db_max_overflow=0,
        )
        engine = create_engine(settings)
        sessionmaker = create_sessionmaker(engine)
        think = args.think_ms / 1000
        lag = LagMeter()
        # The sealer shares the pool and the process with the requests, as in the app.
        sealer = AuditSealer(sessionmaker, interval=args.seal_interval, on_sealed=lag)
        sealer.start()
        attach_commit_signal(engine, sealer.wake)  # commits wake it, as in the app
        await _round(sessionmaker, lag, "audited", args.concurrency, 1.0, think)  # warm-up
        rounds = []
        for index in range(args.rounds):
            for mode in MODES if index % 2 == 0 else tuple(reversed(MODES)):
                rounds.append(await _round(sessionmaker, lag, mode, args.concurrency, args.seconds, think))
        await sealer.stop()
        await seal_pending(sessionmaker)
        async with sessionmaker() as session:
            verified = [await verify_chain(session, chain) for chain in CHAIN_NAMES]
        await engine.dispose()
    finally:
        if not args.database_url:
            await _drop_database(url)

    base = _summary(rounds, "unaudited")
    print(f"concurrency={args.concurrency} think={args.think_ms}ms rounds={args.rounds}x{args.seconds}s")
    print(
        "| mode | requests/s (median) | cost (medians) | cost (paired median) | p50 ms | p95 ms "
        "| added p50 | CPU ms/request | sealing lag p50 / p99 ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for mode in MODES:
        got = _summary(rounds, mode)
        cost = (1 - got.throughput / base.throughput) * 100
        paired = _paired_cost(rounds, mode)
        lag = "-" if got.lag_p50 is None else f"{got.lag_p50:.0f} / {got.lag_p99:.0f}"
        print(
            f"| {mode} | {got.throughput:.0f} | {cost:.1f} % | {paired:.1f} % | {got.p50:.1f} "
            f"| {got.p95:.1f} | {got.p50 - base.p50:.1f} ms | {got.cpu_ms:.2f} | {lag} |"
        )
    print("per round, requests/s:")
    for mode in MODES:
        print(f"  {mode}: {', '.join(f'{r.throughput:.0f}' for r in rounds if r.mode == mode)}")
    for result in verified:
        print(f"after the run: {result.describe()}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--think-ms", type=float, default=5.0)
    parser.add_argument("--seal-interval", type=float, default=SEAL_POLL_SECONDS, help="safety poll, seconds")
    asyncio.run(main(parser.parse_args()))
