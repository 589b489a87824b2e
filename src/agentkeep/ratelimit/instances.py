"""How many limiter instances share Redis: each one beats a heartbeat into a sorted set.

While Redis is down, every instance limits on its own memory. So that together they still
admit no more than the limit, each takes a share: the limit divided by the number of
instances it saw in Redis just before the outage (or RATE_LIMIT_FALLBACK_DIVISOR, if that
is larger). Every process counts: `serve --workers 4` on three machines is twelve.
"""

from __future__ import annotations

import time
import uuid

from redis.asyncio import Redis

# One beat every HEARTBEAT_SECONDS; an instance silent for SEEN_WITHIN_SECONDS is gone.
HEARTBEAT_SECONDS = 10.0
SEEN_WITHIN_SECONDS = 3 * HEARTBEAT_SECONDS


class InstanceRegistry:
    """This instance's heartbeat, and the count of instances seen recently."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.instance_id = uuid.uuid4().hex
        self.seen = 1
        """Instances (this one included) that beat within SEEN_WITHIN_SECONDS of the last beat."""

    async def beat(self, client: Redis) -> int:
        """Record this instance as alive now and count the live ones."""
        now = time.time()
        async with client.pipeline(transaction=True) as pipe:
            pipe.zadd(self.key, {self.instance_id: now})
            pipe.zremrangebyscore(self.key, "-inf", now - SEEN_WITHIN_SECONDS)
            pipe.zcard(self.key)
            # The set outlives its members by a window at most: no stale key in Redis.
            pipe.expire(self.key, int(SEEN_WITHIN_SECONDS) + 1)
            _, _, count, _ = await pipe.execute()
        self.seen = max(1, int(count))
        return self.seen

    async def leave(self, client: Redis) -> None:
        """Remove this instance on a clean shutdown, so the others' share grows back."""
        await client.zrem(self.key, self.instance_id)
