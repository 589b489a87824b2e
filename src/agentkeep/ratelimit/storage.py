"""Limit storage that survives Redis faults: Redis first, in-process memory while it fails.

Every Redis call is bounded (RATE_LIMIT_REDIS_TIMEOUT, 100 ms by default; up to
HARD_TIMEOUT_SECONDS while a burst keeps the process busy, see `_bounded`). A failure or a
timeout switches the process to its own MemoryStorage, so requests are still limited (per
instance) and never wait on a dead Redis; the switch is logged once per outage and counted.
While degraded, one request every RATE_LIMIT_REDIS_RETRY_SECONDS tries Redis again, and the
first one that succeeds ends the outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import ClassVar, TypeVar

import structlog
from limits import RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from redis.asyncio import BlockingConnectionPool, Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

logger = structlog.get_logger("agentkeep.ratelimit")

T = TypeVar("T")
Operation = Callable[[MovingWindowRateLimiter], Awaitable[T]]

# What a broken, slow or restarting Redis raises through redis-py and `limits`.
REDIS_FAULTS = (RedisError, StorageError, OSError, TimeoutError)
REDIS_MAX_CONNECTIONS = 32
# While Redis keeps answering other calls, a queued call may wait past its timeout up to this.
HARD_TIMEOUT_SECONDS = 1.0


_UPSTREAM_SWEEP = "_MemoryStorage__schedule_expiry"


class ThrottledMemoryStorage(MemoryStorage):
    """`limits`' MemoryStorage, sweeping expired entries at most once a second.

    Upstream starts a sweep (one thread hop per key) after every hit whose previous sweep has
    finished, which costs more than the hit itself on a busy server. Expiry stays exact:
    every read compares timestamps; the sweep only frees memory.
    """

    SWEEP_INTERVAL_SECONDS = 1.0
    _next_sweep = 0.0

    async def _MemoryStorage__schedule_expiry(self) -> None:  # noqa: N802  # upstream's private hook
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.SWEEP_INTERVAL_SECONDS
        sweep: Callable[[], Awaitable[None]] = getattr(super(), _UPSTREAM_SWEEP)
        await sweep()


def create_redis_storage(url: str, key_prefix: str) -> tuple[RedisStorage, Redis]:
    """A `limits` Redis storage on a client of its own, with no retries.

    The client is returned too: its owner closes it. Its socket timeouts are only a backstop
    at HARD_TIMEOUT_SECONDS: ResilientStorage applies the short bound itself.
    """
    # A bounded pool: a burst queues for a connection instead of opening hundreds of sockets.
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=REDIS_MAX_CONNECTIONS,
        timeout=HARD_TIMEOUT_SECONDS,
        socket_timeout=HARD_TIMEOUT_SECONDS,
        socket_connect_timeout=HARD_TIMEOUT_SECONDS,
        # Retrying inside one request would multiply the wait; the fallback is the retry.
        retry=Retry(NoBackoff(), 0),
    )
    client = Redis.from_pool(pool)  # the client owns the pool and closes it
    storage = RedisStorage(
        "async+redis://",
        implementation="redispy",
        key_prefix=key_prefix,
        connection_pool=client.connection_pool,  # type: ignore[arg-type]  # typed too narrowly upstream
    )
    return storage, client


class ResilientStorage:
    """Runs each limiter operation on Redis when healthy, on process memory otherwise."""

    # Contention is a property of the process (one event loop), not of one app instance.
    _in_flight: ClassVar[int] = 0
    _last_answer: ClassVar[float] = -math.inf

    def __init__(
        self,
        redis: RedisStorage | None = None,
        *,
        redis_client: Redis | None = None,
        timeout: float = 0.1,
        retry_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = MovingWindowRateLimiter(redis) if redis is not None else None
        self._redis_client = redis_client
        self._memory_storage = ThrottledMemoryStorage()
        self._memory = MovingWindowRateLimiter(self._memory_storage)
        self._timeout = timeout
        self._hard_timeout = max(timeout, HARD_TIMEOUT_SECONDS)
        self._retry_seconds = retry_seconds
        self._clock = clock
        self._degraded = False
        self._next_probe = 0.0
        self.outages = 0
        """Times the limiter switched from Redis to memory (for metrics)."""
        self.fallback_operations = 0
        """Limiter operations (hits, lock and event checks) answered from memory while Redis failed."""
        self.on_outage: Callable[[], None] | None = None
        """Called once per switch to memory (the app counts it in its metrics)."""

    @property
    def uses_redis(self) -> bool:
        return self._redis is not None

    @property
    def degraded(self) -> bool:
        """True while Redis is configured but failing and memory answers instead."""
        return self._degraded

    async def run(self, operation: Operation[T]) -> T:
        if self._redis is not None and self._should_try_redis():
            try:
                result = await self._bounded(operation(self._redis))
            except REDIS_FAULTS as exc:
                self._enter_outage(exc)
            else:
                if self._degraded:
                    self._end_outage()
                return result
        if self._redis is not None:
            self.fallback_operations += 1
        return await operation(self._memory)

    async def _bounded(self, awaitable: Awaitable[T]) -> T:
        """Await a Redis operation for at most the timeout, unless the delay is our own.

        A wall-clock bound cannot tell a slow Redis from a busy process: under a burst, calls
        queue for a pooled connection and answers sit unread while other requests run. So
        when the bound expires while other Redis calls of this process are in flight, or one
        got its answer within the last timeout, the wait is extended (up to
        HARD_TIMEOUT_SECONDS) instead of declaring an outage and counting this request in
        memory, which would let the burst exceed the shared limit. A lone call that gets no
        answer gives up after the timeout.
        """
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(awaitable)
        started = loop.time()
        wait = self._timeout
        ResilientStorage._in_flight += 1
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=wait)
                now = loop.time()
                if done:
                    result = task.result()
                    ResilientStorage._last_answer = now
                    return result
                busy = ResilientStorage._in_flight > 1
                answering = now - ResilientStorage._last_answer <= self._timeout
                if now - started >= self._hard_timeout or not (busy or answering):
                    raise TimeoutError(f"Redis gave no answer within {self._timeout:g}s")
                wait = min(self._timeout, self._hard_timeout - (now - started))
        finally:
            ResilientStorage._in_flight -= 1
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, *REDIS_FAULTS):
                    await task

    async def warm_up(self) -> None:
        """Open a first connection and load the scripts, so the first burst finds them ready
        (or start degraded when Redis is already down)."""
        if self._redis is None:
            return
        item = RateLimitItemPerSecond(1)
        key = uuid.uuid4().hex

        async def operation(strategy: MovingWindowRateLimiter) -> None:
            await strategy.hit(item, "warm-up", key)
            await strategy.get_window_stats(item, "warm-up", key)

        await self.run(operation)

    def _should_try_redis(self) -> bool:
        if not self._degraded:
            return True
        now = self._clock()
        if now < self._next_probe:
            return False
        # Claim the probe before awaiting: concurrent requests keep using memory meanwhile.
        self._next_probe = now + self._retry_seconds
        return True

    def _enter_outage(self, exc: BaseException) -> None:
        self._next_probe = self._clock() + self._retry_seconds
        if self._degraded:
            return
        self._degraded = True
        self.outages += 1
        if self.on_outage is not None:
            self.on_outage()
        logger.warning(
            "rate_limit_redis_unavailable",
            error=type(exc).__name__,
            fallback="memory",
            retry_seconds=self._retry_seconds,
        )

    def _end_outage(self) -> None:
        self._degraded = False
        logger.info("rate_limit_redis_recovered")

    async def close(self) -> None:
        timer = self._memory_storage.timer
        if timer is not None and not timer.done():
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timer
        await self._memory_storage.reset()
        if self._redis_client is not None:
            await self._redis_client.aclose()
