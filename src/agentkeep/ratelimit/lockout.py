"""Account lockout against credential stuffing: failures per account, from any address.

Per-IP limits do not stop an attacker who rotates addresses; this counts failed logins per
username (normalised, then hashed) and locks the name for ACCOUNT_LOCKOUT_SECONDS once the
RATE_LIMIT_LOGIN_FAILURES window is full. Unknown usernames are counted and locked exactly like
real ones, so the lock reveals nothing about which accounts exist.
"""

from __future__ import annotations

import math
import time

from agentkeep.ratelimit.keys import normalise_username
from agentkeep.ratelimit.limiter import RateLimiter
from agentkeep.ratelimit.rules import RuleName
from agentkeep.ratelimit.storage import LimitBackend


class LoginThrottle:
    """Failed-login bookkeeping for the login service (no HTTP here)."""

    def __init__(self, limiter: RateLimiter, lockout_seconds: int) -> None:
        self._limiter = limiter
        self._rule = limiter.rules[RuleName.LOGIN_FAILURES]
        self._lockout_seconds = lockout_seconds

    def _identity(self, username: str) -> str:
        return self._limiter.identity(f"account:{normalise_username(username)}")

    def _lock_key(self, identity: str) -> str:
        return f"lock/{identity}"

    async def is_locked(self, username: str) -> int | None:
        """Seconds until the account unlocks (rounded up), or None when it is not locked."""
        key = self._lock_key(self._identity(username))

        async def operation(backend: LimitBackend) -> int | None:
            if await backend.strategy.storage.get(key) <= 0:
                return None
            expires_at = await backend.strategy.storage.get_expiry(key)
            return max(1, math.ceil(expires_at - time.time()))

        return await self._limiter.storage.run(operation)

    async def register_failure(self, username: str) -> bool:
        """Count a failed login; True when this failure locked the account (audit it once)."""
        identity = self._identity(username)
        rule = self._rule
        lock_key = self._lock_key(identity)

        async def operation(backend: LimitBackend) -> bool:
            item = backend.share(rule.item)
            allowed = await backend.strategy.hit(item, rule.name, identity)
            _, remaining = await backend.strategy.get_window_stats(item, rule.name, identity)
            if allowed and remaining > 0:
                return False
            # The window is full: lock. Only the failure that creates the lock reports it.
            return await backend.strategy.storage.incr(lock_key, self._lockout_seconds) == 1

        return await self._limiter.storage.run(operation)

    async def reset(self, username: str) -> None:
        """Forget the failures (after a successful login) and lift any lock."""
        identity = self._identity(username)
        rule = self._rule
        lock_key = self._lock_key(identity)

        async def operation(backend: LimitBackend) -> None:
            await backend.strategy.clear(backend.share(rule.item), rule.name, identity)
            await backend.strategy.storage.clear(lock_key)

        await self._limiter.storage.run(operation)
