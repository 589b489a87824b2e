"""Redis client construction. Short timeouts: Redis must never stall a request for long."""

from __future__ import annotations

from redis.asyncio import Redis

REDIS_SOCKET_TIMEOUT = 0.25
REDIS_CONNECT_TIMEOUT = 0.25


def create_redis(url: str) -> Redis:
    """Build a client; it connects lazily, so a Redis that is down does not block start-up."""
    return Redis.from_url(
        url,
        socket_timeout=REDIS_SOCKET_TIMEOUT,
        socket_connect_timeout=REDIS_CONNECT_TIMEOUT,
        health_check_interval=30,
        decode_responses=False,
    )
