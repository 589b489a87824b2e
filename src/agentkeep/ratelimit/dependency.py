"""FastAPI dependencies that apply a rule to a route, keyed by client IP or by principal.

(No `from __future__ import annotations` here: FastAPI must read the closures' annotations,
which name local variables.)

@router.post("/auth/login", dependencies=[Depends(rate_limit(RuleName.AUTH))])
@router.post("/api/agents/{id}/runs", dependencies=[Depends(rate_limit(RuleName.RUNS, key=user_key))])
"""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request, Response

from agentkeep.context import RequestContext, RequestContextDep, request_context
from agentkeep.ratelimit.errors import RateLimitDecision, RateLimitExceeded
from agentkeep.ratelimit.limiter import RateLimitedEvent, RateLimiter
from agentkeep.ratelimit.lockout import LoginThrottle
from agentkeep.ratelimit.rules import RuleName

# Requests without a peer address (only seen in-process) share one bucket.
UNKNOWN_CLIENT = "unknown"


def rate_limiter_of(request: Request) -> RateLimiter:
    limiter: RateLimiter = request.app.state.rate_limiter
    return limiter


async def get_rate_limiter(request: Request) -> RateLimiter:
    return rate_limiter_of(request)


RateLimiterDep = Annotated[RateLimiter, Depends(get_rate_limiter)]


async def get_login_throttle(request: Request) -> LoginThrottle:
    throttle: LoginThrottle = request.app.state.login_throttle
    return throttle


LoginThrottleDep = Annotated[LoginThrottle, Depends(get_login_throttle)]


async def client_ip_key(context: RequestContextDep) -> str:
    """Key by client address, as resolved through TRUSTED_PROXIES."""
    return f"ip:{context.ip_address or UNKNOWN_CLIENT}"


def principal_key(principal_dependency: Callable[..., Any], attribute: str = "id") -> Callable[..., Any]:
    """Key by an authenticated principal: `principal_dependency` resolves it (a user, an API
    key...), and its `attribute` (the id by default) names the bucket."""

    async def key(principal: Annotated[Any, Depends(principal_dependency)]) -> str:
        return f"principal:{getattr(principal, attribute)}"

    return key


def _append_headers(response: Response, decision: RateLimitDecision) -> None:
    # Several rules can apply to one route (per-user API and per-user runs): list them all.
    for name, value in (
        ("RateLimit-Policy", decision.policy_header()),
        ("RateLimit", decision.state_header()),
    ):
        if value is None:
            continue
        existing = response.headers.get(name)
        response.headers[name] = f"{existing}, {value}" if existing else value


def rate_limit(
    rule: RuleName, key: Callable[..., Any] = client_ip_key, *, report_remaining: bool = False
) -> Callable[..., Awaitable[RateLimitDecision]]:
    """A dependency that counts the request against `rule`, keyed by what `key` returns
    (itself a dependency); 429 with Retry-After and the RateLimit fields when the limit is
    reached. Allowed responses carry RateLimit-Policy, and RateLimit (the remaining quota)
    only with `report_remaining`, which costs a second Redis call per request: worth it on
    low-volume routes such as login, not on the hot API path."""

    async def dependency(
        request: Request,
        response: Response,
        context: RequestContextDep,
        value: Annotated[str, Depends(key)],
    ) -> RateLimitDecision:
        # Read from the app state directly: each sub-dependency costs FastAPI measurable time
        # on every request of the hot path.
        limiter = rate_limiter_of(request)
        decision = await limiter.hit(rule, value, with_state=report_remaining)
        _count(request, decision)
        if not decision.allowed:
            await limiter.report_exceeded(_event(decision, request, context))
            raise RateLimitExceeded(decision)
        _append_headers(response, decision)
        return decision

    return dependency


async def enforce_principal_limit(
    request: Request, principal: str, rule: RuleName = RuleName.API
) -> RateLimitDecision:
    """Count an authenticated request against the principal's budget; 429 when spent.

    Called by the authentication dependency itself, so every authenticated route is limited
    per user (and per API key) without declaring anything.
    """
    limiter = rate_limiter_of(request)
    decision = await limiter.hit(rule, f"principal:{principal}")
    _count(request, decision)
    if not decision.allowed:
        await limiter.report_exceeded(_event(decision, request, request_context(request)))
        raise RateLimitExceeded(decision)
    return decision


def _count(request: Request, decision: RateLimitDecision) -> None:
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        outcome = "allowed" if decision.allowed else "limited"
        metrics.rate_limit_decisions.labels(str(decision.rule.name), outcome).inc()


def _event(decision: RateLimitDecision, request: Request, context: RequestContext) -> RateLimitedEvent:
    return RateLimitedEvent(
        rule=decision.rule.name,
        identity=decision.identity,
        retry_after=decision.retry_after,
        path=request.url.path,
        ip_address=context.ip_address,
        user_agent=context.user_agent,
        request_id=context.request_id,
    )
