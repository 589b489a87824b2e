"""Writing a record: inserted unsealed in the caller's transaction, no lock on the chain.

A request's record carries everything but its place in the chain (sequence, prev_hash,
hash). It is one plain INSERT, so concurrent requests never wait on each other for the
audit log and an audited commit can share its WAL flush with any other. The sealer
(sealing.py) gives committed records their place, in order, shortly after: the commit wakes
the sealer of the same process (commit_signal.py).

Under AUDIT_HMAC_KEY the record's id is issued under the key and the record carries the
key's id and its insert MAC (keys.py): two short HMACs, nothing else added to the write.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Insert, Table, insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from agentkeep.audit.commit_signal import note_record
from agentkeep.audit.keys import keyring_of
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
class RecordedEvent:
    """A stored, not yet sealed record; the sealer assigns its sequence and hash."""

    id: uuid.UUID
    chain: str
    timestamp: datetime


async def ensure_chain(session: AsyncSession, chain: str) -> None:
    """Create a chain's head row if missing (concurrent creators do not conflict)."""
    values = {
        "chain": chain,
        "sequence": 0,
        "hash": GENESIS_HASH,
        "prev_hash": GENESIS_HASH,
        "pruned_sequence": 0,
        "pruned_hash": GENESIS_HASH,
    }
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(pg_insert(AuditChainHead).values(values).on_conflict_do_nothing())
    else:
        await session.execute(sqlite_insert(AuditChainHead).values(values).on_conflict_do_nothing())


def _insert_statement() -> Insert:
    # A Core insert built once: an ORM insert with a parameter dict would be a bulk insert.
    table = AuditLog.__table__
    assert isinstance(table, Table)
    return insert(table)


_INSERT = _insert_statement()


async def insert_record(session: AsyncSession, pending: PendingRecord) -> RecordedEvent:
    """Store `pending` unsealed inside the caller's transaction (one INSERT, no lock)."""
    keyring = keyring_of(session)
    key = None if keyring is None else keyring.current
    values: dict[str, Any] = {
        "id": uuid.uuid4() if key is None else key.new_record_id(),
        "chain": pending.chain,
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
        "key_id": None if key is None else key.key_id,
    }
    values["mac"] = None if key is None else key.insert_mac(values)
    await session.execute(_INSERT, values)
    note_record(session)  # its commit wakes this process's sealer (commit_signal.py)
    return RecordedEvent(id=values["id"], chain=pending.chain, timestamp=values["timestamp"])
