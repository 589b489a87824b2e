"""The rate limiter service: rules, keyed identities and the resilient storage together."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from agentkeep.config import Settings
from agentkeep.ratelimit.errors import RateLimitDecision
from agentkeep.ratelimit.keys import derive_key, keyed_hash
from agentkeep.ratelimit.rules import Rule, RuleName, RuleSet, build_rules
from agentkeep.ratelimit.storage import LimitBackend, RedisParts, ResilientStorage

logger = structlog.get_logger("agentkeep.ratelimit")

# Every `limits` key lives under "<REDIS_KEY_PREFIX>:ratelimit:" in Redis.
KEY_NAMESPACE = "ratelimit"


@dataclass(frozen=True, slots=True)
class RateLimitedEvent:
    """What a `rate_limited` audit record needs; at most one per rule, identity and window."""

    rule: RuleName
    identity: str
    retry_after: int
    path: str | None
    ip_address: str | None
    user_agent: str | None
    request_id: str | None


RateLimitedListener = Callable[[RateLimitedEvent], Awaitable[None]]


class RateLimiter:
    """Moving-window limits over `limits`, on Redis when configured, in memory otherwise
    (and, while Redis is down, a share of each limit in memory)."""

    def __init__(self, rules: RuleSet, storage: ResilientStorage, hash_key: bytes) -> None:
        self.rules = rules
        self.storage = storage
        self._hash_key = hash_key
        self._listeners: list[RateLimitedListener] = []

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimiter:
        timeout = settings.rate_limit_redis_timeout
        redis = None
        if settings.redis_url is not None:
            redis = RedisParts.connect(
                settings.redis_url.get_secret_value(),
                f"{settings.redis_key_prefix}:{KEY_NAMESPACE}",
                slow_after=timeout,
            )
        storage = ResilientStorage(
            redis,
            timeout=timeout,
            retry_seconds=settings.rate_limit_redis_retry_seconds,
            fallback_divisor=settings.rate_limit_fallback_divisor,
        )
        return cls(build_rules(settings), storage, derive_key(settings.jwt_secret.get_secret_value()))

    @property
    def degraded(self) -> bool:
        """Redis is configured but failing: limits are per instance until it answers again."""
        return self.storage.degraded

    def identity(self, value: str) -> str:
        return keyed_hash(self._hash_key, value)

    async def hit(
        self, rule_name: RuleName, value: str, *, cost: int = 1, with_state: bool = False
    ) -> RateLimitDecision:
        """Count one request of `value` (an IP, a user id...) against a rule.

        A refusal always carries the window state (for Retry-After). An allowed hit carries it
        only `with_state`, which costs a second Redis call.
        """
        rule = self.rules[rule_name]
        identity = self.identity(value)
        return await self.hit_identity(rule, identity, cost=cost, with_state=with_state)

    async def hit_identity(
        self, rule: Rule, identity: str, *, cost: int = 1, with_state: bool = False
    ) -> RateLimitDecision:
        async def operation(backend: LimitBackend) -> RateLimitDecision:
            item = backend.share(rule.item)
            allowed = await backend.strategy.hit(item, rule.name, identity, cost=cost)
            remaining: int | None = None
            reset_after: float | None = None
            if with_state or not allowed:
                reset_at, remaining = await backend.strategy.get_window_stats(item, rule.name, identity)
                reset_after = max(0.0, reset_at - time.time())
            return RateLimitDecision(
                rule=rule,
                identity=identity,
                allowed=allowed,
                remaining=remaining,
                reset_after=reset_after,
                quota=item.amount,
            )

        return await self.storage.run(operation)

    async def clear(self, rule_name: RuleName, value: str) -> None:
        rule = self.rules[rule_name]
        identity = self.identity(value)

        async def operation(backend: LimitBackend) -> None:
            await backend.strategy.clear(backend.share(rule.item), rule.name, identity)

        await self.storage.run(operation)

    async def first_in_window(self, rule: Rule, identity: str, topic: str = "event") -> bool:
        """True once per rule, identity and window: the first caller wins, like SET NX + TTL."""
        key = f"{topic}/{rule.name}/{identity}"

        async def operation(backend: LimitBackend) -> bool:
            return await backend.strategy.storage.incr(key, rule.window_seconds) == 1

        return await self.storage.run(operation)

    def add_listener(self, listener: RateLimitedListener) -> None:
        """Call `listener` for the first refusal of each rule, identity and window."""
        self._listeners.append(listener)

    async def report_exceeded(self, event: RateLimitedEvent) -> bool:
        """Notify listeners unless this window already produced an event; True if notified."""
        rule = self.rules[event.rule]
        if not await self.first_in_window(rule, event.identity):
            return False
        for listener in self._listeners:
            try:
                await listener(event)
            except Exception:
                # A failing audit hook must not turn a 429 into a 500.
                logger.exception("rate_limited_listener_failed", rule=event.rule)
        return True

    async def start(self) -> None:
        await self.storage.warm_up()

    async def close(self) -> None:
        await self.storage.close()
