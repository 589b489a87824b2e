"""Verifying a chain end to end, streaming in batches so memory stays constant.

Each record must carry the next sequence number, the previous record's hash, and a hash
that matches its own canonical content. The first record follows the chain's prune anchor;
the last must match the head row, and a checkpoint's (sequence, hash) must be found.

Records not sealed yet are counted, not checked (they have no place in the chain yet); one
older than `max_unsealed_age` fails verification: no sealer is running, or someone stored a
record behind the sealer's back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from agentkeep.audit.actions import AuditAction
from agentkeep.audit.canonical import record_hash
from agentkeep.audit.checkpoint import Checkpoint
from agentkeep.audit.models import GENESIS_HASH, GLOBAL_CHAIN, AuditChainHead, AuditLog
from agentkeep.audit.sealing import count_unsealed
from agentkeep.db.base import utcnow

BATCH_SIZE = 1000
# A running sealer seals within a fraction of a second; a minute leaves room for restarts.
MAX_UNSEALED_AGE = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class VerifyResult:
    chain: str
    ok: bool
    checked: int
    head_sequence: int
    head_hash: str
    first_bad_sequence: int | None = None
    reason: str | None = None
    pending: int = 0

    def describe(self) -> str:
        if self.ok:
            waiting = f", {self.pending} not sealed yet" if self.pending else ""
            return f"chain {self.chain!r} OK: {self.checked} records, head {self.head_sequence}{waiting}"
        return f"chain {self.chain!r} BROKEN at sequence {self.first_bad_sequence}: {self.reason}"


async def load_head(session: AsyncSession, chain: str) -> AuditChainHead | None:
    return await session.get(AuditChainHead, chain, populate_existing=True)


async def _latest_prune(session: AsyncSession, chain: str, up_to: int) -> AuditLog | None:
    statement = (
        select(AuditLog)
        .where(
            AuditLog.chain == chain,
            AuditLog.action == AuditAction.AUDIT_PRUNED.value,
            AuditLog.sequence <= up_to,
        )
        .order_by(AuditLog.sequence.desc())
        .limit(1)
    )
    return (await session.scalars(statement)).first()


def _anchor_matches(prune: AuditLog | None, sequence: int, anchor_hash: str) -> bool:
    if prune is None:
        return False
    details: dict[str, Any] = prune.details
    return details.get("through_sequence") == sequence and details.get("anchor_hash") == anchor_hash


async def verify_chain(
    session: AsyncSession,
    chain: str = GLOBAL_CHAIN,
    checkpoint: Checkpoint | None = None,
    batch_size: int = BATCH_SIZE,
    max_unsealed_age: timedelta = MAX_UNSEALED_AGE,
) -> VerifyResult:
    """Check `chain` end to end; read-only (pending records are reported, not sealed)."""
    head = await load_head(session, chain)
    head_sequence = head.sequence if head else 0
    head_hash = head.hash if head else GENESIS_HASH
    anchor_sequence = head.pruned_sequence if head else 0
    anchor_hash = head.pruned_hash if head else GENESIS_HASH

    def broken(sequence: int, reason: str, checked: int) -> VerifyResult:
        return VerifyResult(chain, False, checked, head_sequence, head_hash, sequence, reason)

    if head is None:
        first = await session.scalar(select(func.min(AuditLog.sequence)).where(AuditLog.chain == chain))
        if first is not None:
            return broken(int(first), "the chain head row is missing", 0)

    if anchor_sequence and not _anchor_matches(
        await _latest_prune(session, chain, head_sequence), anchor_sequence, anchor_hash
    ):
        return broken(anchor_sequence + 1, "the prune anchor matches no audit_pruned record", 0)

    expected, prev_hash, checked = anchor_sequence + 1, anchor_hash, 0
    checkpoint_seen = checkpoint is None or checkpoint.sequence == 0
    if checkpoint is not None and 0 < checkpoint.sequence <= anchor_sequence:
        # The checkpoint predates the prune; it can only be compared with the anchor.
        checkpoint_seen = checkpoint.sequence < anchor_sequence or checkpoint.hash == anchor_hash
        if not checkpoint_seen:
            return broken(anchor_sequence, "the prune anchor differs from the checkpoint", 0)
    while True:
        # Only records up to the head read above: newer ones belong to later transactions.
        statement = (
            select(AuditLog)
            .where(AuditLog.chain == chain, AuditLog.sequence >= expected, AuditLog.sequence <= head_sequence)
            .order_by(AuditLog.sequence)
            .limit(batch_size)
            .execution_options(populate_existing=True)
        )
        rows = list((await session.scalars(statement)).all())
        for row in rows:
            if row.sequence != expected:
                return broken(expected, "record missing (sequence gap)", checked)
            if row.prev_hash != prev_hash:
                return broken(row.sequence, "prev_hash does not link to the previous record", checked)
            if record_hash(row) != row.hash:
                return broken(row.sequence, "content does not match its hash", checked)
            if checkpoint is not None and row.sequence == checkpoint.sequence:
                if row.hash != checkpoint.hash:
                    return broken(row.sequence, "record differs from the checkpoint", checked)
                checkpoint_seen = True
            prev_hash, expected, checked = row.hash, expected + 1, checked + 1
        session.expunge_all()
        if len(rows) < batch_size:
            break
    if expected - 1 != head_sequence:
        return broken(expected, "records missing before the head (truncated)", checked)
    if prev_hash != head_hash:
        return broken(head_sequence, "the head hash does not match the newest record", checked)
    if not checkpoint_seen:
        assert checkpoint is not None
        return broken(
            head_sequence + 1, f"truncated: the checkpoint names sequence {checkpoint.sequence}", checked
        )
    pending, oldest = await count_unsealed(session, chain)
    if oldest is not None and utcnow() - oldest > max_unsealed_age:
        seconds = int(max_unsealed_age.total_seconds())
        reason = (
            f"{pending} records not sealed, the oldest for more than {seconds} s "
            "(is a sealer running? `agentkeep audit seal`)"
        )
        return broken(head_sequence + 1, reason, checked)
    return VerifyResult(chain, True, checked, head_sequence, head_hash, pending=pending)
