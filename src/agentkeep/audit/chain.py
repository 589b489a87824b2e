"""Appending to a hash chain: serialised by the chain's head row, gap-free, fork-free.

The head row update is the lock: `UPDATE audit_chain_heads SET sequence = sequence + 1 ...`
takes the row lock on PostgreSQL (the write lock on SQLite). It is issued after the caller's
own changes are flushed, so the lock is held only from the audit insert to the commit; if
the transaction rolls back, the head update rolls back with it and no sequence is lost.

On PostgreSQL the whole append is one statement (one round trip under the lock): the head
update computes the new hash with sha256() from a canonical template (canonical.py) and a
data-modifying CTE inserts the record. SQLite, which serialises writers anyway, takes the
same steps one statement at a time.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Insert, Table, Text, bindparam, cast, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from agentkeep.audit.canonical import CANONICAL_FIELDS, canonical_template, record_hash
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


# The canonical fields a request supplies; the chain adds its position and links.
_CONTENT = tuple(name for name in CANONICAL_FIELDS if name not in {"sequence", "prev_hash"})


def _postgres_append_statement() -> Insert:
    """Built once: the head update computes the hash in SQL; the CTE inserts the record.

    Core tables, not ORM classes: with a parameter dict an ORM insert would become a bulk insert.
    """
    heads, logs = AuditChainHead.__table__, AuditLog.__table__
    assert isinstance(heads, Table)
    assert isinstance(logs, Table)
    text_of_hash = (
        bindparam("before_prev_hash", type_=Text)
        + heads.c.hash
        + bindparam("between", type_=Text)
        + cast(heads.c.sequence + 1, Text)
        + bindparam("after", type_=Text)
    )
    head = (
        update(heads)
        .where(heads.c.chain == bindparam("head_chain", type_=Text))
        .values(
            sequence=heads.c.sequence + 1,
            prev_hash=heads.c.hash,
            hash=func.encode(func.sha256(func.convert_to(text_of_hash, "UTF8")), "hex"),
        )
        .returning(heads.c.sequence, heads.c.prev_hash, heads.c.hash)
        .cte("head")
    )
    # Parameter names must not equal column names: those would be read as extra values.
    selected = [bindparam(f"v_{name}", type_=logs.c[name].type) for name in _CONTENT]
    return (
        insert(logs)
        .from_select(
            [*_CONTENT, "sequence", "prev_hash", "hash"],
            select(*selected, head.c.sequence, head.c.prev_hash, head.c.hash),
        )
        .returning(logs.c.sequence, logs.c.hash)
    )


_POSTGRES_APPEND = _postgres_append_statement()


async def _append_postgres(session: AsyncSession, values: dict[str, Any]) -> tuple[int, str] | None:
    template = canonical_template(values)
    parameters = {
        **{f"v_{name}": value for name, value in values.items()},
        "head_chain": values["chain"],
        "before_prev_hash": template.before_prev_hash,
        "between": template.between,
        "after": template.after,
    }
    row = (await session.execute(_POSTGRES_APPEND, parameters)).one_or_none()
    return None if row is None else (int(row[0]), str(row[1]))


async def _append_stepwise(session: AsyncSession, values: dict[str, Any]) -> tuple[int, str] | None:
    advanced = (
        await session.execute(
            update(AuditChainHead)
            .where(AuditChainHead.chain == values["chain"])
            .values(sequence=AuditChainHead.sequence + 1)
            .returning(AuditChainHead.sequence, AuditChainHead.hash)
            .execution_options(synchronize_session=False)
        )
    ).one_or_none()
    if advanced is None:
        return None
    sequence, prev_hash = int(advanced[0]), str(advanced[1])
    row = {**values, "sequence": sequence, "prev_hash": prev_hash}
    row["hash"] = record_hash(row)
    await session.execute(insert(AuditLog).values(row))
    await session.execute(
        update(AuditChainHead)
        .where(AuditChainHead.chain == values["chain"])
        .values(prev_hash=prev_hash, hash=row["hash"])
        .execution_options(synchronize_session=False)
    )
    return sequence, row["hash"]


async def append(session: AsyncSession, pending: PendingRecord) -> AppendedRecord:
    """Insert `pending` as the next record of its chain, inside the caller's transaction.

    The caller flushes its own changes first (service.record does), so their locks and
    constraint checks never happen while this transaction holds the chain head.
    """
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
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
    }
    step = _append_postgres if session.get_bind().dialect.name == "postgresql" else _append_stepwise
    appended = await step(session, values)
    if appended is None:
        await ensure_chain(session, pending.chain)
        appended = await step(session, values)
        assert appended is not None
    sequence, record_hash_ = appended
    return AppendedRecord(
        id=values["id"],
        chain=pending.chain,
        sequence=sequence,
        timestamp=values["timestamp"],
        hash=record_hash_,
    )
