"""Redis faults: the limiter keeps limiting from memory, says so, and returns to Redis."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from redis.asyncio import Redis
from structlog.testing import capture_logs

from agentkeep.config import Settings
from agentkeep.ratelimit.liveness import PROBE_TIMEOUT_SECONDS
from tests.ratelimit.conftest import LimitedApp, limited_app
from tests.support.throwaway import ThrowawayRedis, free_port

pytestmark = pytest.mark.redis


async def _statuses(subject: LimitedApp, count: int) -> list[int]:
    return [(await subject.http.post("/_test/login")).status_code for _ in range(count)]


def _degraded(subject: LimitedApp) -> bool:
    return subject.limiter.degraded


async def _redis_keys(url: str, prefix: str) -> int:
    client = Redis.from_url(url)
    try:
        return len(await client.keys(f"{prefix}:ratelimit:LIMITER/auth/*"))
    finally:
        await client.aclose()


async def test_fallback_when_redis_stops_and_return_when_it_is_back(
    throwaway_redis: ThrowawayRedis, make_settings: Callable[..., Settings], sqlite_url: str
) -> None:
    settings = make_settings(
        database_url=sqlite_url,
        redis_url=throwaway_redis.url,
        rate_limit_auth="3/minute",
        rate_limit_redis_retry_seconds=0.3,
        # The database check must pass on a busy host; the Redis timeouts are the defaults.
        health_check_timeout=5,
    )
    async with limited_app(settings) as subject:
        assert await _statuses(subject, 2) == [200, 200]
        assert await _redis_keys(throwaway_redis.url, settings.redis_key_prefix) == 1
        assert (await subject.http.get("/health")).json()["status"] == "ok"

        throwaway_redis.stop()
        with capture_logs() as logs:
            # Memory starts empty: the instance allows its own 3, then refuses. Never a 500.
            down = await _statuses(subject, 6)
            await asyncio.sleep(0.35)
            down += await _statuses(subject, 2)  # a retry fails: still one outage
        assert down == [200, 200, 200, 429, 429, 429, 429, 429]
        assert _degraded(subject)
        assert subject.limiter.storage.outages == 1
        assert subject.limiter.storage.fallback_operations >= 8
        assert subject.app.state.metrics.rate_limit_fallbacks._value.get() == 1
        assert [entry["event"] for entry in logs].count("rate_limit_redis_unavailable") == 1
        health = await subject.http.get("/health")
        assert health.status_code == 200
        assert health.json()["status"] == "degraded"
        assert health.json()["checks"]["redis"]["status"] == "degraded"

        throwaway_redis.start()
        # The instance's own share is spent, so the first 200 is Redis answering again: one
        # request per retry period tries it (bounded: the first retry may be slow to connect
        # on a loaded host, and a PING then ends the outage in the background).
        deadline = asyncio.get_running_loop().time() + 10
        while await _statuses(subject, 1) != [200]:
            assert asyncio.get_running_loop().time() < deadline, "Redis never taken back"
            await asyncio.sleep(0.35)
        assert not _degraded(subject)
        assert await _redis_keys(throwaway_redis.url, settings.redis_key_prefix) == 1
        # Redis alone decides again: its window (fresh after the restart) has 2 left.
        assert await _statuses(subject, 3) == [200, 200, 429]
        health = await subject.http.get("/health")
        assert (health.status_code, health.json()["status"]) == (200, "ok")


async def test_unreachable_redis_from_the_start_still_limits_and_never_500s(
    make_settings: Callable[..., Settings], sqlite_url: str
) -> None:
    settings = make_settings(
        database_url=sqlite_url,
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        rate_limit_auth="2/minute",
    )
    async with limited_app(settings) as subject:
        assert await _statuses(subject, 4) == [200, 200, 429, 429]
        assert subject.limiter.degraded


class SilentServer:
    """Accepts TCP connections and never answers: a hung Redis."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])
        self.clients: list[socket.socket] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        self.sock.settimeout(0.05)
        while not self._stop.is_set():
            try:
                connection, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.clients.append(connection)

    def close(self) -> None:
        self._stop.set()
        self.thread.join(timeout=2)
        for client in self.clients:
            client.close()
        self.sock.close()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


async def test_a_hung_redis_costs_one_short_timeout_then_memory_answers(
    silent_server: SilentServer, make_settings: Callable[..., Settings], sqlite_url: str
) -> None:
    settings = make_settings(
        database_url=sqlite_url,
        redis_url=f"redis://127.0.0.1:{silent_server.port}/0",
        rate_limit_auth="3/minute",
        rate_limit_redis_retry_seconds=60,
    )
    async with limited_app(settings) as subject:
        started = time.monotonic()
        first = await _statuses(subject, 1)
        first_took = time.monotonic() - started
        started = time.monotonic()
        rest = await _statuses(subject, 4)
        rest_took = time.monotonic() - started
        probes = subject.limiter.storage.probe

    assert first + rest == [200, 200, 200, 429, 429]
    # At worst the first request waits for the timeout and the unanswered PING (the outage may
    # already have been found at start-up); the others go to memory at once. 2 s of margin
    # for a loaded host.
    assert first_took < settings.rate_limit_redis_timeout + PROBE_TIMEOUT_SECONDS + 2
    assert rest_took < 1
    assert probes is not None
    assert probes.probes == 1  # one unanswered PING found the outage; no request paid again


async def test_a_burst_against_a_hung_redis_waits_for_one_probe_and_still_limits(
    silent_server: SilentServer, make_settings: Callable[..., Settings], sqlite_url: str
) -> None:
    settings = make_settings(
        database_url=sqlite_url,
        redis_url=f"redis://127.0.0.1:{silent_server.port}/0",
        rate_limit_auth="3/minute",
        rate_limit_redis_retry_seconds=60,
    )
    async with limited_app(settings) as subject:
        started = time.monotonic()
        responses = await asyncio.gather(*(subject.http.post("/_test/login") for _ in range(10)))
        took = time.monotonic() - started

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] * 3 + [429] * 7
    # The burst shares one unanswered PING, then memory answers: far below the 5 s hard bound
    # a slow but alive Redis would get (2 s of margin for a loaded host).
    assert took < settings.rate_limit_redis_timeout + PROBE_TIMEOUT_SECONDS + 2
