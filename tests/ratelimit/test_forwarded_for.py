"""X-Forwarded-For against real `agentkeep serve` processes on loopback: whose address the
audit trail records and the auth limit counts, with and without a trusted proxy.

Two distinct peers on one machine: the client socket is bound to 127.0.0.2 (the "proxy", or
just a client) or to 127.0.0.3 (another client); the server listens on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from tests.ratelimit.processes import Deployment
from tests.support.databases import REDIS_URL, unavailable

pytestmark = [pytest.mark.redis, pytest.mark.slow]

PROXY = "127.0.0.2"
OTHER_PEER = "127.0.0.3"
# Documentation addresses (RFC 5737) standing for clients behind the proxy.
ALICE = "198.51.100.7"
BOB = "198.51.100.8"
LIMIT = 3


@contextmanager
def one_instance(tmp_path: Path, **settings: str) -> Iterator[tuple[str, Deployment, Path]]:
    """One `agentkeep serve` on SQLite, its limits in the shared Redis under a fresh prefix."""
    database = tmp_path / "agentkeep.db"
    deployment = Deployment.create(
        DATABASE_URL=f"sqlite+aiosqlite:///{database}",
        REDIS_URL=REDIS_URL,
        RATE_LIMIT_AUTH=f"{LIMIT}/minute",
        **settings,
    )
    deployment.cli("migrate", cwd=tmp_path)
    with deployment.serve(1, tmp_path) as (server,):
        yield server.base_url, deployment, database


@asynccontextmanager
async def client_from(address: str, base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.AsyncHTTPTransport(local_address=address)
    async with httpx.AsyncClient(transport=transport, base_url=base_url, timeout=60) as http:
        yield http


async def failed_login(http: httpx.AsyncClient, forwarded_for: str | None) -> int:
    # A fresh unknown name each time: the per-account lockout stays out of the way.
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    data = {"username": f"nobody-{secrets.token_hex(4)}", "password": secrets.token_urlsafe(12)}
    return (await http.post("/auth/login", data=data, headers=headers)).status_code


async def audited_addresses(database: Path, action: str, expected: int) -> Counter[str | None]:
    """The ip_address of every `action` record; waits (bounded) for the failure records, which
    are written once each request's transaction has ended."""
    deadline = time.monotonic() + 30
    while True:
        with sqlite3.connect(database) as connection:
            rows = connection.execute(
                "SELECT ip_address FROM audit_logs WHERE action = ?", (action,)
            ).fetchall()
        if len(rows) >= expected or time.monotonic() > deadline:
            return Counter(row[0] for row in rows)
        await asyncio.sleep(0.2)


async def auth_limit_keys(deployment: Deployment) -> int:
    client = Redis.from_url(REDIS_URL)
    try:
        return len(await client.keys(f"{deployment.env['REDIS_KEY_PREFIX']}:ratelimit:LIMITER/auth/*"))
    finally:
        await client.aclose()


@pytest.fixture(autouse=True)
def _needs_redis(redis_available: bool) -> None:
    if not redis_available:
        unavailable("Redis")


async def test_without_trusted_proxies_the_header_is_ignored_and_the_peer_counts(tmp_path: Path) -> None:
    with one_instance(tmp_path) as (url, deployment, database):
        async with client_from(PROXY, url) as first, client_from(OTHER_PEER, url) as second:
            statuses = [await failed_login(first, ALICE) for _ in range(LIMIT)]
            # Another forged address changes nothing: the peer's bucket is spent.
            statuses.append(await failed_login(first, BOB))
            # Another peer naming the same forged address has a bucket of its own.
            statuses.append(await failed_login(second, ALICE))
        failed = await audited_addresses(database, "login_failed", LIMIT + 1)
        limited = await audited_addresses(database, "rate_limited", 1)
        keys = await auth_limit_keys(deployment)

    assert statuses == [401] * LIMIT + [429, 401]
    assert failed == Counter({PROXY: LIMIT, OTHER_PEER: 1})
    assert limited == Counter({PROXY: 1})
    assert keys == 2  # one window per peer address, none for the forged ones


async def test_behind_a_trusted_proxy_the_forwarded_client_counts_and_a_forging_peer_does_not(
    tmp_path: Path,
) -> None:
    with one_instance(tmp_path, TRUSTED_PROXIES=PROXY) as (url, deployment, database):
        async with client_from(PROXY, url) as proxy, client_from(OTHER_PEER, url) as forger:
            statuses = [await failed_login(proxy, ALICE) for _ in range(LIMIT)]
            statuses.append(await failed_login(proxy, ALICE))  # Alice's bucket is spent
            statuses.append(await failed_login(proxy, BOB))  # Bob, behind the same proxy, is not
            # Alice prepending a made-up address: the proxy appended her real one, read from the right.
            statuses.append(await failed_login(proxy, f"203.0.113.50, {ALICE}"))
            # A peer that is not a trusted proxy forging Alice's (spent) address: its own bucket.
            statuses.append(await failed_login(forger, ALICE))
        failed = await audited_addresses(database, "login_failed", LIMIT + 2)
        limited = await audited_addresses(database, "rate_limited", 1)
        keys = await auth_limit_keys(deployment)

    assert statuses == [401] * LIMIT + [429, 401, 429, 401]
    assert failed == Counter({ALICE: LIMIT, BOB: 1, OTHER_PEER: 1})
    assert limited == Counter({ALICE: 1})  # one record per rule, key and window
    assert keys == 3  # Alice, Bob and the forging peer; never the proxy itself
