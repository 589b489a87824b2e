"""Login throughput against the raw argon2 verify rate, and /health/live latency under load.

Starts a real `agentkeep serve` on 127.0.0.1 (SQLite in a temporary folder by default, or a
throwaway database on a PostgreSQL server with --postgres ADMIN_URL), registers one user, then
for each run:

1. raw: argon2id verify at the server's parameters in this process, with as many threads
   as the server's PASSWORD_HASH_CONCURRENCY and at the same (lowered) thread priority as
   the server's hashing threads, for --seconds just before and just after step 2
   (averaged): the ceiling for logins on this machine;
2. login: --logins logins over HTTP with --in-flight at a time (logins per second);
3. liveness: 100 logins in flight at once while /health/live is probed one request at a
   time; p50/p99 of the probe latency.

Prints the per-run figures and the medians. Every request goes to 127.0.0.1 and every loop
is bounded.

    .venv/bin/python bench/auth_login.py --runs 3
    .venv/bin/python bench/auth_login.py --runs 3 --postgres postgresql+asyncpg://postgres@127.0.0.1/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from agentkeep.security.passwords import (
    ARGON2_MEMORY_COST_KIB,
    ARGON2_PARALLELISM,
    ARGON2_TIME_COST,
    build_password_hash,
    lower_thread_priority,
    normalise_password,
)

HOST = "127.0.0.1"
PASSWORD = "bench passphrase that is long enough"  # noqa: S105 - a throwaway account
AGENTKEEP = [sys.executable, "-m", "agentkeep"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def _admin(admin_url: str, statement: str) -> None:
    engine = create_async_engine(admin_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


@contextmanager
def database(postgres_admin_url: str | None, folder: Path) -> Iterator[str]:
    if postgres_admin_url is None:
        yield f"sqlite+aiosqlite:///{folder / 'bench.db'}"
        return
    name = f"agentkeep_bench_{secrets.token_hex(4)}"
    asyncio.run(_admin(postgres_admin_url, f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(postgres_admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin(postgres_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def server(env: dict[str, str], folder: Path) -> Iterator[str]:
    subprocess.run([*AGENTKEEP, "migrate"], env=env, cwd=folder, check=True, capture_output=True)
    port = free_port()
    process = subprocess.Popen(
        [*AGENTKEEP, "serve", "--host", HOST, "--port", str(port)],
        env=env,
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with suppress(httpx.HTTPError):
                if httpx.get(f"{base}/health/live", timeout=1).status_code == 200:
                    break
            time.sleep(0.2)
        else:
            raise SystemExit("agentkeep serve did not come up within 60 s")
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def raw_verify_rate(threads: int, seconds: float) -> float:
    """Verifies per second at the server's argon2 parameters, `threads` at a time."""
    hasher = build_password_hash()
    stored = hasher.hash(normalise_password(PASSWORD))
    counts = [0] * threads
    stop = time.perf_counter() + seconds

    def work(index: int) -> None:
        lower_thread_priority()
        while time.perf_counter() < stop:
            hasher.verify(normalise_password(PASSWORD), stored)
            counts[index] += 1

    workers = [threading.Thread(target=work, args=(index,)) for index in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(counts) / (time.perf_counter() - started)


async def _login(client: httpx.AsyncClient, base: str) -> None:
    response = await client.post(f"{base}/auth/login", data={"username": "bench", "password": PASSWORD})
    if response.status_code != 200:
        raise SystemExit(f"login failed: {response.status_code} {response.text}")


async def login_rate(base: str, total: int, in_flight: int) -> float:
    limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
    async with httpx.AsyncClient(limits=limits, timeout=120) as client:
        await _login(client, base)  # warm up the connection pool and the server
        gate = asyncio.Semaphore(in_flight)

        async def one() -> None:
            async with gate:
                await _login(client, base)

        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(total)))
        return total / (time.perf_counter() - started)


async def live_latency_under_logins(base: str, logins: int = 100) -> tuple[float, float, int]:
    limits = httpx.Limits(max_connections=logins, max_keepalive_connections=logins)
    async with (
        httpx.AsyncClient(limits=limits, timeout=300) as loaders,
        httpx.AsyncClient(timeout=30) as prober,
    ):
        await prober.get(f"{base}/health/live")
        load = asyncio.gather(*(_login(loaders, base) for _ in range(logins)))
        await asyncio.sleep(0.2)  # let the logins reach the server and queue for hashing
        samples: list[float] = []
        while not load.done() and len(samples) < 10_000:
            started = time.perf_counter()
            response = await prober.get(f"{base}/health/live")
            samples.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200
            await asyncio.sleep(0.01)
        await load
    return statistics.median(samples), percentile(samples, 0.99), len(samples)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each raw measurement")
    parser.add_argument("--logins", type=int, default=150, help="logins per throughput measurement")
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--postgres", metavar="ADMIN_URL", help="run on a throwaway database there")
    args = parser.parse_args()

    threads = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        with database(args.postgres, folder) as url:
            env = {
                **{k: v for k, v in os.environ.items() if not k.startswith(("JWT_", "DATABASE_", "REDIS_"))},
                "JWT_SECRET": secrets.token_urlsafe(48),
                "DATABASE_URL": url,
                "PASSWORD_HASH_CONCURRENCY": str(threads),
                "RATE_LIMIT_AUTH": "1000000/minute",
                "LOG_LEVEL": "WARNING",
            }
            with server(env, folder) as base:
                body = {"username": "bench", "email": "bench@example.com", "password": PASSWORD}
                httpx.post(f"{base}/auth/register", json=body, timeout=30).raise_for_status()
                rows = []
                for run in range(1, args.runs + 1):
                    # Raw measured just before and just after the logins: on a shared machine
                    # the load of other work drifts, and this brackets it.
                    raw_before = raw_verify_rate(threads, args.seconds)
                    rate = asyncio.run(login_rate(base, args.logins, args.in_flight))
                    raw = (raw_before + raw_verify_rate(threads, args.seconds)) / 2
                    p50, p99, probes = asyncio.run(live_latency_under_logins(base))
                    rows.append((raw, rate, rate / raw, p50, p99))
                    print(
                        f"run {run}: raw verify {raw:.1f}/s, login {rate:.1f}/s ({rate / raw:.2f}x), "
                        f"/health/live under 100 logins p50 {p50:.1f} ms p99 {p99:.1f} ms ({probes} probes)"
                    )
    backend = "PostgreSQL" if args.postgres else "SQLite"
    medians = [statistics.median(column) for column in zip(*rows, strict=True)]
    print()
    print(
        f"{backend}, {threads} CPUs, {platform.python_implementation()} {platform.python_version()}, "
        f"argon2id m={ARGON2_MEMORY_COST_KIB} KiB t={ARGON2_TIME_COST} p={ARGON2_PARALLELISM}, "
        f"{args.runs} runs (medians)"
    )
    print("| backend | raw verify/s | login/s | login / raw | /health/live p50 | /health/live p99 |")
    print("|---|---|---|---|---|---|")
    print(
        f"| {backend} | {medians[0]:.1f} | {medians[1]:.1f} | {medians[2]:.2f}x "
        f"| {medians[3]:.1f} ms | {medians[4]:.1f} ms |"
    )


if __name__ == "__main__":
    main()
