"""What waits in the audit trail, read at scrape time: the sealing lag and refused records.

Both read only unsealed rows (`sequence IS NULL`), which the partial index
`ix_audit_logs_unsealed` holds, so a scrape stays cheap however long the trail. A refused
record stays unsealed as evidence (tamper.py), so the count stays above zero, and `agentkeep
audit verify` fails, until an operator has dealt with it: an alert on it does not resolve by
itself the way one on the detection counter does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agentkeep.audit.models import AuditLog
from agentkeep.observability.metrics import Metrics

logger = structlog.get_logger("agentkeep.audit")


@dataclass(frozen=True)
class SealingBacklog:
    oldest_unsealed_age: float  # seconds; 0 when nothing waits
    refused: int


async def sealing_backlog(session: AsyncSession, now: datetime) -> SealingBacklog:
    unsealed = AuditLog.sequence.is_(None)
    oldest = await session.scalar(
        select(func.min(AuditLog.timestamp)).where(unsealed, AuditLog.seal_refused.is_(None))
    )
    refused = await session.scalar(
        select(func.count()).select_from(AuditLog).where(unsealed, AuditLog.seal_refused.is_not(None))
    )
    age = 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())
    return SealingBacklog(oldest_unsealed_age=age, refused=int(refused or 0))


async def refresh_audit_gauges(sessionmaker: async_sessionmaker[AsyncSession], metrics: Metrics) -> None:
    """Refresh the audit gauges before a scrape; a database outage leaves the last values."""
    try:
        async with sessionmaker() as session:
            backlog = await sealing_backlog(session, datetime.now(UTC))
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        logger.warning("audit_gauges_failed", error=type(exc).__name__)
        return
    metrics.set_audit_backlog(backlog.oldest_unsealed_age, backlog.refused)
