"""Audit queries: the filtered newest-first listing and the sequence-ordered stream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from agentkeep.audit.models import GLOBAL_CHAIN, AuditLog
from agentkeep.audit.schemas import AuditLogFilter, AuditLogRead
from agentkeep.db.rows import columns_for
from agentkeep.pagination import keyset_rows

EXPORT_BATCH = 1000
# What the listing shows, read as rows (db/rows.py).
_LISTED = columns_for(AuditLog, AuditLogRead)


def _aware(value: datetime) -> datetime:
    # A filter without an offset is read as UTC rather than refused.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _time_range(statement: Select[Any], since: datetime | None, until: datetime | None) -> Select[Any]:
    if since is not None:
        statement = statement.where(AuditLog.timestamp >= _aware(since))
    if until is not None:
        statement = statement.where(AuditLog.timestamp < _aware(until))
    return statement


def _filtered(filters: AuditLogFilter) -> Select[Any]:
    statement: Select[Any] = select(*_LISTED)
    equal = {
        AuditLog.user_id: filters.user_id,
        AuditLog.org_id: filters.org_id,
        AuditLog.action: filters.action.value if filters.action else None,
        AuditLog.resource_type: filters.resource_type,
        AuditLog.resource_id: filters.resource_id,
        AuditLog.status: filters.status.value if filters.status else None,
        AuditLog.ip_address: filters.ip_address,
    }
    for column, value in equal.items():
        if value is not None:
            statement = statement.where(column == value)
    return _time_range(statement, filters.since, filters.until)


async def list_audit_logs(
    session: AsyncSession, filters: AuditLogFilter
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of AuditLogRead rows, newest first, keyed on (timestamp, id); the cursor
    resumes after its last row."""
    return await keyset_rows(
        session,
        _filtered(filters),
        AuditLog.timestamp,
        AuditLog.id,
        limit=filters.limit,
        cursor=filters.cursor,
    )


async def stream_chain(
    session: AsyncSession,
    *,
    chain: str = GLOBAL_CHAIN,
    since: datetime | None = None,
    until: datetime | None = None,
    batch_size: int = EXPORT_BATCH,
) -> AsyncIterator[AuditLog]:
    """Every sealed record of a chain in sequence order, in keyset batches (constant memory)."""
    after = 0
    while True:
        statement = _time_range(
            select(AuditLog).where(AuditLog.chain == chain, AuditLog.sequence > after), since, until
        )
        statement = statement.order_by(AuditLog.sequence).limit(batch_size)
        rows = list((await session.scalars(statement)).all())
        for row in rows:
            yield row
        session.expunge_all()
        if len(rows) < batch_size:
            return
        last = rows[-1].sequence
        assert last is not None  # the query selects sealed records only
        after = last
