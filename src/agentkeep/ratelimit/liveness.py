"""Is Redis alive? A PING on a connection and a thread of its own, independent of the event loop.

A Redis call that is slow to come back cannot tell a dead Redis from a busy host: under load
the answer may have arrived long ago and simply wait, unread, behind other requests on the
event loop. The probe asks Redis from a separate thread with a blocking socket: the bound it
applies is Redis's answer time (plus thread scheduling), not the event loop's backlog, and
its connection does not queue behind the burst in the limiter's pool.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import structlog
from redis import Redis as SyncRedis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

logger = structlog.get_logger("agentkeep.ratelimit")

# How long a PING may take before Redis counts as down. Redis answers a PING in well under a
# millisecond; a second covers a host whose CPUs are shared with much else.
PROBE_TIMEOUT_SECONDS = 1.0


class LivenessProbe:
    """One probe at a time; callers that ask while it runs share its verdict."""

    def __init__(self, url: str, *, timeout: float = PROBE_TIMEOUT_SECONDS, fresh_for: float = 0.1) -> None:
        self._client = SyncRedis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            # One thread pings, so the pool holds a single connection, opened on first use.
            max_connections=1,
        )
        self.timeout = timeout
        self._fresh_for = fresh_for
        self._executor: ThreadPoolExecutor | None = None
        self._running: asyncio.Future[bool] | None = None
        self._alive_at = -float("inf")
        self.probes = 0
        """PINGs sent (for tests and metrics)."""

    def verdict(self) -> asyncio.Future[bool]:
        """A future resolving to True when Redis answers a PING within the timeout.

        A recent success (within `fresh_for` seconds) answers at once without a new PING.
        """
        loop = asyncio.get_running_loop()
        if time.monotonic() - self._alive_at <= self._fresh_for:
            done: asyncio.Future[bool] = loop.create_future()
            done.set_result(True)
            return done
        if self._running is None or self._running.done():
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ratelimit-probe")
            self.probes += 1
            self._running = loop.run_in_executor(self._executor, self._ping)
        return self._running

    def _ping(self) -> bool:
        try:
            answered = bool(self._client.ping())
        except (RedisError, OSError) as exc:
            logger.debug("rate_limit_redis_probe_failed", error=type(exc).__name__)
            # The next PING opens a fresh connection rather than reuse a half-read one.
            self._client.close()
            return False
        if answered:
            self._alive_at = time.monotonic()
        return answered

    async def close(self) -> None:
        if self._running is not None and not self._running.done():
            # Bounded by the socket timeout: the thread finishes its PING, then we close.
            await asyncio.wait({self._running}, timeout=self.timeout * 2)
        if self._executor is not None:
            self._executor.shutdown(wait=False)
        self._client.close()
