"""1,000 concurrent requests against a limit of 100 over two production `agentkeep serve`
processes sharing Redis, with the default (production) Redis timeouts: exactly 100 pass."""

from __future__ import annotations

import re
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from agentkeep.security.secretbox import generate_key
from tests.ratelimit.processes import Deployment, spread
from tests.support.databases import (
    REDIS_URL,
    create_postgres_database,
    drop_postgres_database,
    migrate,
    postgres_answers,
    unavailable,
)

pytestmark = [pytest.mark.redis, pytest.mark.slow]

LIMIT = 100
REQUESTS = 1000
IN_FLIGHT = 150
# Long enough that no hit leaves the moving window while the test runs, however slow the host.
WINDOW = "hour"
WINDOW_SECONDS = 3600


@pytest.fixture
async def fresh_postgres(redis_available: bool) -> AsyncIterator[str]:
    if not await postgres_answers():
        unavailable("PostgreSQL")
    if not redis_available:
        unavailable("Redis")
    url = await create_postgres_database("agentkeep_exact")
    await migrate(url)
    yield url
    await drop_postgres_database(url)


def production(database_url: str) -> Deployment:
    """ENVIRONMENT=production with every setting its profile requires, and nothing about the
    Redis timeouts: RATE_LIMIT_REDIS_TIMEOUT and RATE_LIMIT_REDIS_RETRY_SECONDS keep their
    defaults."""
    return Deployment.create(
        ENVIRONMENT="production",
        DATABASE_URL=database_url,
        REDIS_URL=REDIS_URL,
        ALLOWED_HOSTS="127.0.0.1",
        CORS_ORIGINS="https://console.example.com",
        AUDIT_HMAC_KEY=secrets.token_urlsafe(40),
        SECRETS_ENCRYPTION_KEYS=generate_key(),
        RATE_LIMIT_API=f"{LIMIT}/{WINDOW}",
        # Each process admits the whole burst: the limiter is under test, not this bound.
        MAX_REQUESTS_IN_FLIGHT=str(IN_FLIGHT),
    )


async def test_1000_concurrent_requests_over_two_production_instances_admit_exactly_100(
    fresh_postgres: str, tmp_path: Path
) -> None:
    deployment = production(fresh_postgres)
    password = secrets.token_urlsafe(24)
    deployment.cli(
        "create-admin", "--username", "operator", "--email", "operator@example.com",
        cwd=tmp_path, extra={"AGENTKEEP_ADMIN_PASSWORD": password},
    )  # fmt: skip
    with deployment.serve(2, tmp_path) as servers:
        urls = [server.base_url for server in servers]
        async with httpx.AsyncClient(timeout=60) as http:
            login = await http.post(
                f"{urls[0]}/auth/login", data={"username": "operator", "password": password}
            )
        assert login.status_code == 200, login.text
        token = login.json()["access_token"]

        started = time.monotonic()
        # GET /auth/me: authenticated, so every request spends the caller's RATE_LIMIT_API.
        responses = await spread(
            urls, "/auth/me", REQUESTS, in_flight=IN_FLIGHT, headers={"Authorization": f"Bearer {token}"}
        )
        took = time.monotonic() - started

        async with httpx.AsyncClient(timeout=60) as http:
            health = [(await http.get(f"{url}/health")).json() for url in urls]
            metrics = [(await http.get(f"{url}/metrics")).text for url in urls]
        # The limiter's own account of any slow call or outage, for a failure message.
        limiter_log = [
            line for server in servers for line in server.log().splitlines() if "rate_limit" in line
        ]

    statuses = [response.status_code for response in responses]
    print(f"{REQUESTS} requests over 2 instances in {took:.1f} s")  # the figure, with -s
    assert statuses.count(200) == LIMIT, (Counter(statuses), limiter_log[:20])
    assert statuses.count(429) == REQUESTS - LIMIT
    # Both instances admitted some: the limit is shared, not split by one taking all.
    assert all(any(r.status_code == 200 for r in responses[n::2]) for n in range(2))
    for refused in (response for response in responses if response.status_code == 429):
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.headers["Content-Type"].startswith("application/problem+json")
        # draft-ietf-httpapi-ratelimit-headers: the policy (quota, window) and the state.
        assert refused.headers["RateLimit-Policy"] == f'"api";q={LIMIT};w={WINDOW_SECONDS}'
        assert re.fullmatch(r'"api";r=0;t=\d+', refused.headers["RateLimit"])
    # Every decision came from Redis: no instance ever fell back to its memory.
    assert [report["checks"]["redis"]["status"] for report in health] == ["ok", "ok"]
    for text in metrics:
        assert re.search(r"^agentkeep_rate_limit_fallbacks_total 0\.0$", text, re.MULTILINE), text[:2000]
