"""When the limiter leaves Redis (a real outage only) and what each instance admits then."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Callable
from contextlib import AsyncExitStack

import pytest

from agentkeep.config import Settings
from agentkeep.ratelimit.liveness import PROBE_TIMEOUT_SECONDS
from tests.ratelimit.conftest import LimitedApp, limited_app
from tests.support.throwaway import ThrowawayRedis, free_port

pytestmark = pytest.mark.redis


def _freeze(server: ThrowawayRedis) -> int:
    """Stop the server process where it stands: connections stay open, nothing answers."""
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGSTOP)
    return server.process.pid


def _pause(server: ThrowawayRedis, seconds: float) -> threading.Timer:
    """Freeze the server now and let it go on after `seconds`, from a thread of its own so a
    busy event loop in this process cannot stretch the pause."""
    timer = threading.Timer(seconds, os.kill, args=(_freeze(server), signal.SIGCONT))
    timer.start()
    return timer


async def _burst(subject: LimitedApp, count: int) -> list[int]:
    responses = await asyncio.gather(*(subject.http.post("/_test/login") for _ in range(count)))
    return [response.status_code for response in responses]


async def test_a_redis_that_pauses_past_the_timeout_is_slow_not_down(
    throwaway_redis: ThrowawayRedis, make_settings: Callable[..., Settings], sqlite_url: str
) -> None:
    # Default timeouts: calls wait past the 0.1 s timeout. The pause stays well inside the
    # PING bound, so the probe sent after 0.1 s is answered once the server resumes.
    settings = make_settings(
        database_url=sqlite_url, redis_url=throwaway_redis.url, rate_limit_auth="5/minute"
    )
    pause = 0.4
    assert settings.rate_limit_redis_timeout < pause < PROBE_TIMEOUT_SECONDS / 2
    async with limited_app(settings) as subject:
        # A lone call first (nothing else in flight to explain its wait), then a burst.
        timer = _pause(throwaway_redis, pause)
        statuses = [(await subject.http.post("/_test/login")).status_code]
        timer.join()
        timer = _pause(throwaway_redis, pause)
        statuses += await _burst(subject, 11)
        timer.join()
        storage = subject.limiter.storage
        assert (storage.degraded, storage.outages, storage.fallback_operations) == (False, 0, 0)
        assert storage.probe is not None
        assert storage.probe.probes >= 1  # the slowness was noticed, and checked
    # Every decision came from Redis, which saw exactly 5 admitted.
    assert sorted(statuses) == [200] * 5 + [429] * 7


async def test_a_frozen_redis_is_an_outage_after_one_unanswered_ping(
    throwaway_redis: ThrowawayRedis, make_settings: Callable[..., Settings], sqlite_url: str
) -> None:
    settings = make_settings(
        database_url=sqlite_url,
        redis_url=throwaway_redis.url,
        rate_limit_auth="4/minute",
        rate_limit_redis_retry_seconds=60,
    )
    async with limited_app(settings) as subject:
        _freeze(throwaway_redis)  # until the fixture ends
        loop = asyncio.get_running_loop()
        started = loop.time()
        statuses = await _burst(subject, 8)
        took = loop.time() - started
        storage = subject.limiter.storage
        assert (storage.degraded, storage.outages) == (True, 1)
    assert sorted(statuses) == [200] * 4 + [429] * 4
    # The timeout, then one PING bound, not the 5 s a slow call may wait (3.5 s of margin:
    # 3.4 s was seen with the suite and other work on the same 2 cores).
    assert took < settings.rate_limit_redis_timeout + PROBE_TIMEOUT_SECONDS + 3.5


@pytest.mark.parametrize(
    ("limit", "divisor", "share"),
    [(9, 3, 3), (10, 3, 3), (2, 5, 1)],  # floor(limit / divisor), never below one request
)
async def test_on_the_fallback_each_instance_enforces_its_share_of_the_setting(
    make_settings: Callable[..., Settings], sqlite_url: str, limit: int, divisor: int, share: int
) -> None:
    # Redis unreachable from the start: no instance was ever seen, the setting decides.
    settings = make_settings(
        database_url=sqlite_url,
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        rate_limit_auth=f"{limit}/minute",
        rate_limit_fallback_divisor=divisor,
    )
    async with limited_app(settings) as subject:
        responses = [await subject.http.post("/_test/login") for _ in range(share + 2)]
    assert [response.status_code for response in responses] == [200] * share + [429] * 2
    # The headers state the quota this instance enforces now.
    assert responses[-1].headers["RateLimit-Policy"] == f'"auth";q={share};w=60'
    assert responses[0].headers["RateLimit"].startswith(f'"auth";r={share - 1};')


async def test_instances_seen_in_redis_set_the_share_when_it_goes_down(
    throwaway_redis: ThrowawayRedis, make_settings: Callable[..., Settings], sqlite_url: str
) -> None:
    # Nothing configured (divisor 1): three instances heartbeat into Redis, which then stops.
    settings = make_settings(
        database_url=sqlite_url, redis_url=throwaway_redis.url, rate_limit_auth="12/minute"
    )
    async with AsyncExitStack() as stack:
        instances = [await stack.enter_async_context(limited_app(settings)) for _ in range(3)]
        for instance in instances:
            await instance.limiter.storage.beat()  # the beat every instance makes every 10 s
        assert [instance.limiter.storage.fallback_divisor for instance in instances] == [3, 3, 3]

        throwaway_redis.stop()
        admitted = 0
        for instance in instances:
            statuses = [(await instance.http.post("/_test/login")).status_code for _ in range(8)]
            assert instance.limiter.degraded
            admitted += statuses.count(200)
            assert statuses == [200] * 4 + [429] * 4
    # Together, no more than the limit.
    assert admitted == 12
