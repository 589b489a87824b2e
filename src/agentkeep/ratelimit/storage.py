"""Limit storage that survives Redis faults: Redis first, in-process memory while it is down.

The rule (docs/ratelimit.md, "Redis faults"): the limiter leaves Redis only on a real outage.

- A refused, reset or closed connection, or an error answer, is an outage at once.
- A call still unanswered after RATE_LIMIT_REDIS_TIMEOUT (0.1 s) is only slow: it asks the
  liveness probe (a PING from its own thread and connection, bounded by 1 s) and keeps
  waiting. The probe's silence is an outage; its answer means Redis is up, and the call waits
  for its own answer up to CALL_HARD_TIMEOUT_SECONDS. A call past that bound is answered from
  memory; SLOW_CALLS_BEFORE_OUTAGE of them in a row are an outage too.

While on memory each instance enforces its share of every limit (`LimitBackend.share`), and
every RATE_LIMIT_REDIS_RETRY_SECONDS one request tries Redis again, bounded by the timeout
alone; if that fails, a PING in the background may still end the outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog
from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from redis.asyncio import BlockingConnectionPool, Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from agentkeep.ratelimit.instances import HEARTBEAT_SECONDS, InstanceRegistry
from agentkeep.ratelimit.liveness import LivenessProbe

logger = structlog.get_logger("agentkeep.ratelimit")

T = TypeVar("T")

# What a broken or restarting Redis raises through redis-py and `limits`.
REDIS_FAULTS = (RedisError, StorageError, OSError)
# What a slow one raises: only the socket backstop, set at the hard bound.
REDIS_TIMEOUTS = (RedisTimeoutError, TimeoutError)
REDIS_MAX_CONNECTIONS = 32
# While the probe says Redis is up, a call waits this long for its own answer: a busy host
# delays answers by whole seconds, and falling back then would let a burst exceed the limit.
CALL_HARD_TIMEOUT_SECONDS = 5.0
SLOW_CALLS_BEFORE_OUTAGE = 3


class RedisUnresponsive(Exception):
    """The liveness probe got no answer: Redis is down or hung."""


class SlowRedisCall(Exception):
    """Redis answers PINGs, but this call had no answer within the hard bound."""


@dataclass(frozen=True, slots=True)
class LimitBackend:
    """Where an operation runs: Redis (the whole limit) or this instance's memory (a share)."""

    strategy: MovingWindowRateLimiter
    divisor: int = 1

    def share(self, item: RateLimitItem) -> RateLimitItem:
        """The limit this instance enforces: all of it on Redis, 1/divisor (at least 1) on memory."""
        if self.divisor == 1:
            return item
        return type(item)(max(1, item.amount // self.divisor), item.multiples, item.namespace)


Operation = Callable[[LimitBackend], Awaitable[T]]


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

    The client is returned too: its owner closes it. ResilientStorage bounds every call
    itself; the socket timeout is only a backstop at the hard bound.
    """
    # A bounded pool: a burst queues for a connection instead of opening hundreds of sockets.
    # No pool timeout: waiting for a connection is part of the call, which is bounded as a whole.
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=REDIS_MAX_CONNECTIONS,
        timeout=None,
        socket_timeout=CALL_HARD_TIMEOUT_SECONDS,
        socket_connect_timeout=CALL_HARD_TIMEOUT_SECONDS,
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


@dataclass(frozen=True, slots=True)
class RedisParts:
    """What the limiter uses of one Redis: the `limits` storage, its client, the probe and
    the instance registry."""

    storage: RedisStorage
    client: Redis
    probe: LivenessProbe
    registry: InstanceRegistry

    @classmethod
    def connect(cls, url: str, key_prefix: str, *, slow_after: float) -> RedisParts:
        storage, client = create_redis_storage(url, key_prefix)
        probe = LivenessProbe(url, fresh_for=slow_after)
        return cls(storage, client, probe, InstanceRegistry(f"{key_prefix}:instances"))


class ResilientStorage:
    """Runs each limiter operation on Redis when it is up, on process memory otherwise."""

    def __init__(
        self,
        redis: RedisParts | None = None,
        *,
        timeout: float = 0.1,
        retry_seconds: float = 5.0,
        fallback_divisor: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._parts = redis
        self._on_redis = LimitBackend(MovingWindowRateLimiter(redis.storage)) if redis is not None else None
        self._memory_storage = ThrottledMemoryStorage()
        self._memory = MovingWindowRateLimiter(self._memory_storage)
        self._timeout = timeout
        self._hard_timeout = max(CALL_HARD_TIMEOUT_SECONDS, timeout)
        self._retry_seconds = retry_seconds
        self._fallback_divisor = fallback_divisor
        self._clock = clock
        self._degraded = False
        self._next_probe = 0.0
        self._slow_streak = 0
        self._heartbeat: asyncio.Task[None] | None = None
        self.outages = 0
        """Times the limiter switched from Redis to memory (for metrics)."""
        self.fallback_operations = 0
        """Limiter operations (hits, lock and event checks) answered from memory instead of Redis."""
        self.slow_calls = 0
        """Calls that waited the whole hard bound while Redis answered PINGs."""
        self.on_outage: Callable[[], None] | None = None
        """Called once per switch to memory (the app counts it in its metrics)."""

    @property
    def uses_redis(self) -> bool:
        return self._parts is not None

    @property
    def degraded(self) -> bool:
        """True while Redis is configured but down and memory answers instead."""
        return self._degraded

    @property
    def probe(self) -> LivenessProbe | None:
        return self._parts.probe if self._parts is not None else None

    @property
    def fallback_divisor(self) -> int:
        """How many instances share a limit while on memory: the larger of the setting and
        the instances seen in Redis before the outage."""
        seen = self._parts.registry.seen if self._parts is not None else 1
        return max(self._fallback_divisor, seen)

    async def run(self, operation: Operation[T]) -> T:
        if self._on_redis is not None:
            if not self._degraded:
                try:
                    result = await self._call_redis(operation(self._on_redis))
                except (SlowRedisCall, *REDIS_TIMEOUTS) as exc:
                    self._slow_call(exc)
                except (RedisUnresponsive, *REDIS_FAULTS) as exc:
                    self._enter_outage(exc)
                else:
                    self._slow_streak = 0
                    return result
            elif self._recovery_due():
                with contextlib.suppress(*REDIS_FAULTS, *REDIS_TIMEOUTS):
                    result = await asyncio.wait_for(operation(self._on_redis), self._timeout)
                    self._end_outage()
                    return result
                self._probe_for_recovery()
        if self._on_redis is None:
            return await operation(LimitBackend(self._memory))
        self.fallback_operations += 1
        return await operation(LimitBackend(self._memory, self.fallback_divisor))

    async def _call_redis(self, awaitable: Awaitable[T]) -> T:
        """Await a Redis call; past the timeout, wait on as long as the probe says Redis is up."""
        assert self._parts is not None
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(awaitable)
        started = loop.time()
        verdict: asyncio.Future[bool] | None = None
        try:
            while True:
                waiting: set[asyncio.Future[Any]] = {task}
                if verdict is None:
                    bound = self._timeout
                else:
                    bound = self._hard_timeout
                    if not verdict.done():
                        waiting.add(verdict)
                remaining = max(0.0, started + bound - loop.time())
                await asyncio.wait(waiting, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
                if task.done():
                    return task.result()
                if verdict is None:
                    verdict = self._parts.probe.verdict()
                elif verdict.done() and not _alive(verdict):
                    raise RedisUnresponsive(f"no answer to PING within {self._parts.probe.timeout:g}s")
                elif loop.time() - started >= self._hard_timeout:
                    raise SlowRedisCall(f"no answer within {self._hard_timeout:g}s while Redis answers PINGs")
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, *REDIS_FAULTS):
                    await task

    def _recovery_due(self) -> bool:
        """While degraded: True for one request every retry period, which tries Redis with the
        plain timeout (no probe, no wait past it); the others stay on memory."""
        now = self._clock()
        if now < self._next_probe:
            return False
        # Claim the attempt before awaiting: concurrent requests keep using memory meanwhile.
        self._next_probe = now + self._retry_seconds
        return True

    def _probe_for_recovery(self) -> None:
        # The attempt may have failed only for being slow: a PING that answers ends the outage.
        assert self._parts is not None
        self._parts.probe.verdict().add_done_callback(self._recover_if_alive)

    def _recover_if_alive(self, verdict: asyncio.Future[bool]) -> None:
        if self._degraded and _alive(verdict):
            self._end_outage()

    async def warm_up(self) -> None:
        """Open a first connection, load the scripts and register this instance, so the first
        burst finds them ready (or start degraded when Redis is already down)."""
        if self._parts is None:
            return
        item = RateLimitItemPerSecond(1)
        key = uuid.uuid4().hex

        async def operation(backend: LimitBackend) -> None:
            await backend.strategy.hit(item, "warm-up", key)
            await backend.strategy.get_window_stats(item, "warm-up", key)

        await self.run(operation)
        await self.beat()
        self._heartbeat = asyncio.create_task(self._beat_forever())

    async def beat(self) -> None:
        """Count the instances on Redis now; while degraded, keep the count from before."""
        assert self._parts is not None
        if self._degraded:
            return
        try:
            await asyncio.wait_for(self._parts.registry.beat(self._parts.client), self._hard_timeout)
        except (*REDIS_FAULTS, *REDIS_TIMEOUTS) as exc:
            logger.debug("rate_limit_heartbeat_failed", error=type(exc).__name__)

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            await self.beat()

    def _slow_call(self, exc: BaseException) -> None:
        self.slow_calls += 1
        self._slow_streak += 1
        if self._slow_streak >= SLOW_CALLS_BEFORE_OUTAGE:
            self._enter_outage(exc)
            return
        logger.warning("rate_limit_redis_slow", error=str(exc), fallback="memory for this call")

    def _enter_outage(self, exc: BaseException) -> None:
        self._next_probe = self._clock() + self._retry_seconds
        self._slow_streak = 0
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
            divisor=self.fallback_divisor,
            retry_seconds=self._retry_seconds,
        )

    def _end_outage(self) -> None:
        self._degraded = False
        logger.info("rate_limit_redis_recovered")

    async def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        timer = self._memory_storage.timer
        if timer is not None and not timer.done():
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timer
        await self._memory_storage.reset()
        if self._parts is not None:
            if not self._degraded:
                with contextlib.suppress(*REDIS_FAULTS, *REDIS_TIMEOUTS):
                    await asyncio.wait_for(self._parts.registry.leave(self._parts.client), self._timeout * 10)
            await self._parts.probe.close()
            await self._parts.client.aclose()


def _alive(verdict: asyncio.Future[bool]) -> bool:
    return not verdict.cancelled() and verdict.exception() is None and verdict.result()
