"""Audit hooks for events raised outside a request's service layer (rate-limit refusals)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agentkeep.audit.actions import AuditAction, AuditStatus
from agentkeep.audit.service import AuditUnavailable, record_failure
from agentkeep.context import RequestContext
from agentkeep.observability.metrics import Metrics
from agentkeep.ratelimit.limiter import RateLimitedEvent, RateLimitedListener


def rate_limited_recorder(
    sessionmaker: async_sessionmaker[AsyncSession], metrics: Metrics
) -> RateLimitedListener:
    """A limiter listener writing one `rate_limited` record per rule, identity and window.

    The identity is the limiter's keyed hash, never the raw address or user id; the address
    is in the record's own ip_address field like every other event's.
    """

    async def listener(event: RateLimitedEvent) -> None:
        context = RequestContext(
            request_id=event.request_id, ip_address=event.ip_address, user_agent=event.user_agent
        )
        try:
            await record_failure(
                sessionmaker,
                AuditAction.RATE_LIMITED,
                context=context,
                status=AuditStatus.DENIED,
                resource_type="rate_limit",
                resource_id=str(event.rule),
                details={"identity": event.identity, "retry_after": event.retry_after, "path": event.path},
            )
        except AuditUnavailable:
            metrics.audit_failures.inc()
            raise
        metrics.audit_records.labels(AuditAction.RATE_LIMITED.value).inc()

    return listener
