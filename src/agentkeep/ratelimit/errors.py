"""The 429 answer and the RateLimit header fields (draft-ietf-httpapi-ratelimit-headers-10)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from agentkeep.errors import AppError
from agentkeep.ratelimit.rules import KeyKind, Rule


@dataclass(frozen=True, slots=True)
class RateLimitDecision:
    """The outcome of one hit on a rule for one identity."""

    rule: Rule
    identity: str
    """Keyed hash of what the rule is keyed by (never the raw address or name)."""
    allowed: bool
    remaining: int | None
    """Quota left in the window; None when the state was not asked for (one call less)."""
    reset_after: float | None
    """Seconds until the oldest hit in the window expires, freeing one unit of quota."""
    quota: int | None = None
    """The limit enforced: the rule's amount, or this instance's share of it while Redis is down."""

    @property
    def retry_after(self) -> int:
        """Whole seconds to wait, rounded up so a client that obeys is never early."""
        return max(1, math.ceil(self.reset_after or 0))

    def policy_header(self) -> str:
        quota = self.quota if self.quota is not None else self.rule.amount
        return f'"{self.rule.name}";q={quota};w={self.rule.window_seconds}'

    def state_header(self) -> str | None:
        if self.remaining is None or self.reset_after is None:
            return None
        reset = self.retry_after if not self.allowed else max(0, math.ceil(self.reset_after))
        return f'"{self.rule.name}";r={max(0, self.remaining)};t={reset}'


def rate_limit_headers(decisions: Iterable[RateLimitDecision]) -> dict[str, str]:
    """`RateLimit-Policy` and `RateLimit` (when known) for the rules that applied."""
    decisions = list(decisions)
    headers = {"RateLimit-Policy": ", ".join(decision.policy_header() for decision in decisions)}
    states = [state for decision in decisions if (state := decision.state_header()) is not None]
    if states:
        headers["RateLimit"] = ", ".join(states)
    return headers


class RateLimitExceeded(AppError):
    status_code = 429
    type_slug = "rate-limited"
    title = "Too many requests"

    def __init__(self, decision: RateLimitDecision) -> None:
        self.decision = decision
        what = "from this address" if decision.rule.key_kind is KeyKind.CLIENT_IP else "for this account"
        headers = {"Retry-After": str(decision.retry_after), **rate_limit_headers([decision])}
        super().__init__(
            f"Too many requests {what}; retry in {decision.retry_after} seconds.",
            headers=headers,
            extra={"retry_after": decision.retry_after},
        )
