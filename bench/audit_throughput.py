"""Audited vs unaudited write throughput on PostgreSQL, side by side in one run.

Each simulated request does some work outside the database (`--think-ms`, standing in for
password hashing, validation and network I/O), then one transaction that inserts a user row
and, when audited, appends an audit record (the chain lock is held from that append to the
commit). Modes alternate in short rounds so machine noise hits both equally.

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
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

from agentkeep.audit.actions import AuditAction
from agentkeep.audit.service import record
from agentkeep.audit.verify import verify_chain
from agentkeep.config import load_settings
from agentkeep.context import RequestContext
from agentkeep.db.engine import create_engine, create_sessionmaker
from agentkeep.db.migrate import upgrade
from agentkeep.observability.logging import configure_logging
from agentkeep.users.models import User

ADMIN_URL = os.environ.get("BENCH_ADMIN_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
CHAINS = 8
MODES = ("unaudited", "audited", "audited-chains")
CONTEXT = RequestContext(request_id="bench", ip_address="203.0.113.5", user_agent="bench/1")


@dataclass
class Round:
    mode: str
    requests: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)


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
    sessionmaker: async_sessionmaker[AsyncSession], mode: str, concurrency: int, seconds: float, think: float
) -> Round:
    result = Round(mode)
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            result.latencies.append(await _request(sessionmaker, mode, think))

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.seconds = time.perf_counter() - started
    result.requests = len(result.latencies)
    return result


def _summary(rounds: list[Round], mode: str) -> tuple[float, float, float]:
    chosen = [r for r in rounds if r.mode == mode]
    throughput = sum(r.requests for r in chosen) / sum(r.seconds for r in chosen)
    latencies = sorted(latency for r in chosen for latency in r.latencies)
    p50 = statistics.median(latencies) * 1000
    p95 = latencies[int(len(latencies) * 0.95)] * 1000
    return throughput, p50, p95


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
        await _round(sessionmaker, "audited", args.concurrency, 1.0, think)  # warm-up
        rounds = []
        for index in range(args.rounds):
            for mode in MODES if index % 2 == 0 else tuple(reversed(MODES)):
                rounds.append(await _round(sessionmaker, mode, args.concurrency, args.seconds, think))
        async with sessionmaker() as session:
            verified = await verify_chain(session)
        await engine.dispose()
    finally:
        if not args.database_url:
            await _drop_database(url)

    base, base_p50, _ = _summary(rounds, "unaudited")
    print(f"concurrency={args.concurrency} think={args.think_ms}ms rounds={args.rounds}x{args.seconds}s")
    print("| mode | requests/s | p50 ms | p95 ms | throughput cost | added p50 |")
    print("|---|---|---|---|---|---|")
    for mode in MODES:
        throughput, p50, p95 = _summary(rounds, mode)
        cost = (1 - throughput / base) * 100
        print(
            f"| {mode} | {throughput:.0f} | {p50:.1f} | {p95:.1f} | {cost:.1f} % | {p50 - base_p50:.1f} ms |"
        )
    print(f"global chain after the run: {verified.describe()}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--think-ms", type=float, default=5.0)
    asyncio.run(main(parser.parse_args()))
