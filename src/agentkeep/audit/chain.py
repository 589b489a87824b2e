"""Appending to a hash chain: serialised by the chain's head row, gap-free, fork-free.

The head row update is the lock. `UPDATE ... SET sequence = sequence + 1 ... RETURNING`
takes the row lock on PostgreSQL (the write lock on SQLite) and hands back the next
sequence and the previous hash in one round trip. It is issued after the caller's own
changes are flushed, so the lock is held only from the audit insert to the commit; if the
transaction rolls back, the head update rolls back with it and no sequence is lost.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from agentkeep.audit.canonical import record_hash
from agentkeep.audit.models import GENESIS_HASH, AuditChainHead, AuditLog
from agentkeep.db.base import utcnow


@dataclass(frozen=True, slots=True)
class PendingRecord:
    """A sanitised record, everything but its place in the chain."""

    chain: str
    user_id: uuid.UUID | None
    org_id: uuid.UUID | None
    actor_type: str
    action: str
    resource_type: str | None
    resource_id: str | None
    status: str
    details: dict[str, Any]
    ip_address: str | None
    user_agent: str | None
    request_id: str | None


@dataclass(frozen=True, slots=True)
class AppendedRecord:
    id: uuid.UUID
    chain: str
    sequence: int
    timestamp: datetime
    hash: str


async def _advance_head(session: AsyncSession, chain: str) -> tuple[int, str] | None:
    statement = (
        update(AuditChainHead)
        .where(AuditChainHead.chain == chain)
        .values(sequence=AuditChainHead.sequence + 1)
        .returning(AuditChainHead.sequence, AuditChainHead.hash)
        .execution_options(synchronize_session=False)
    )
    row = (await session.execute(statement)).one_or_none()
    return None if row is None else (int(row[0]), str(row[1]))


async def ensure_chain(session: AsyncSession, chain: str) -> None:
    """Create a chain's head row if missing (concurrent creators do not conflict)."""
    values = {
        "chain": chain,
        "sequence": 0,
        "hash": GENESIS_HASH,
        "pruned_sequence": 0,
        "pruned_hash": GENESIS_HASH,
    }
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(pg_insert(AuditChainHead).values(values).on_conflict_do_nothing())
    else:
        await session.execute(sqlite_insert(AuditChainHead).values(values).on_conflict_do_nothing())


async def append(session: AsyncSession, pending: PendingRecord) -> AppendedRecord:
    """Insert `pending` as the next record of its chain, inside the caller's transaction."""
    # The caller's changes go first: their locks and constraint checks must not happen while
    # this transaction holds the chain head.
    await session.flush()
    advanced = await _advance_head(session, pending.chain)
    if advanced is None:
        await ensure_chain(session, pending.chain)
        advanced = await _advance_head(session, pending.chain)
        assert advanced is not None
    sequence, prev_hash = advanced
    # Stamped under the lock, so timestamps never go backwards along a chain.
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "chain": pending.chain,
        "sequence": sequence,
        "timestamp": utcnow(),
        "user_id": pending.user_id,
        "org_id": pending.org_id,
        "actor_type": pending.actor_type,
        "action": pending.action,
        "resource_type": pending.resource_type,
        "resource_id": pending.resource_id,
        "status": pending.status,
        "details": pending.details,
        "ip_address": pending.ip_address,
        "user_agent": pending.user_agent,
        "request_id": pending.request_id,
        "prev_hash": prev_hash,
    }
    values["hash"] = record_hash(values)
    await session.execute(insert(AuditLog).values(values))
    await session.execute(
        update(AuditChainHead)
        .where(AuditChainHead.chain == pending.chain)
        .values(hash=values["hash"])
        .execution_options(synchronize_session=False)
    )
    return AppendedRecord(
        id=values["id"],
        chain=pending.chain,
        sequence=sequence,
        timestamp=values["timestamp"],
        hash=values["hash"],
    )
