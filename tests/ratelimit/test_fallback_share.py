"""Redis stopped under two real `agentkeep serve` processes: on their fallback, together they
admit no more than the limit, each its share (docs/ratelimit.md, "Redis faults")."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis

from agentkeep.ratelimit.instances import HEARTBEAT_SECONDS
from tests.ratelimit.processes import Deployment, spread
from tests.support.throwaway import ThrowawayRedis

pytestmark = [pytest.mark.redis, pytest.mark.slow]

LIMIT = 6
INSTANCES = 2


def log_events(log: str) -> list[dict[str, object]]:
    """The JSON events of a server's log (servers log in JSON, as in production)."""
    events = []
    for line in log.splitlines():
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if isinstance(event, dict):
                events.append(event)
    return events


async def wait_until_both_counted(redis_url: str, key: str, since: float) -> None:
    """Until both instances have beaten after both were up, so each has counted the other;
    bounded by two heartbeat periods plus a margin for a loaded host."""
    client = Redis.from_url(redis_url)
    deadline = time.monotonic() + 2 * HEARTBEAT_SECONDS + 30
    try:
        while True:
            beats = await client.zrangebyscore(key, since, "+inf")
            if len(beats) == INSTANCES:
                return
            assert time.monotonic() < deadline, f"heartbeats since both were up: {beats}"
            await asyncio.sleep(0.5)
    finally:
        await client.aclose()


async def test_two_instances_on_their_fallback_together_admit_at_most_the_limit(
    throwaway_redis: ThrowawayRedis, tmp_path: Path
) -> None:
    # Nothing tells the instances how many they are (RATE_LIMIT_FALLBACK_DIVISOR stays 1):
    # they count each other in Redis before it goes.
    deployment = Deployment.create(
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'agentkeep.db'}",
        REDIS_URL=throwaway_redis.url,
        RATE_LIMIT_AUTH=f"{LIMIT}/minute",
    )
    deployment.cli("migrate", cwd=tmp_path)
    with deployment.serve(INSTANCES, tmp_path) as servers:
        up = time.time()
        key = f"{deployment.env['REDIS_KEY_PREFIX']}:ratelimit:instances"
        await wait_until_both_counted(throwaway_redis.url, key, up)

        throwaway_redis.stop()
        urls = [server.base_url for server in servers]
        responses = await spread(
            urls, "/auth/login", 20, in_flight=4, method="POST", data={"username": "x", "password": "wrong"}
        )
        logs = [server.log() for server in servers]

    statuses = [response.status_code for response in responses]
    # 401 is an admitted attempt (wrong password), 429 a refused one.
    assert statuses.count(401) == LIMIT
    assert statuses.count(429) == 20 - LIMIT
    for n in range(INSTANCES):
        assert [response.status_code for response in responses[n::INSTANCES]].count(401) == LIMIT // INSTANCES
    for log in logs:
        outages = [event for event in log_events(log) if event.get("event") == "rate_limit_redis_unavailable"]
        assert outages, log
        assert all(event.get("divisor") == INSTANCES for event in outages), outages
