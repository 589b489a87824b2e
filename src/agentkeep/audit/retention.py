"""Checkpointing and pruning a chain: the operations behind `agentkeep audit checkpoint|prune`.

Pruning deletes a prefix of the chain and records where it stopped (the anchor: the last
pruned sequence and its hash) on the head row and in an `audit_pruned` event in the chain
itself, so the remaining records still verify and a moved anchor is detected. Both seal the
pending records first, so they cover everything committed before they started.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from agentkeep.audit.actions import ActorType, AuditAction
from agentkeep.audit.canonical import format_timestamp
from agentkeep.audit.checkpoint import Checkpoint, make_checkpoint
from agentkeep.audit.models import GLOBAL_CHAIN, AuditChainHead, AuditLog
from agentkeep.audit.sealing import SEAL_BATCH, seal_batch, seal_with
from agentkeep.audit.service import record
from agentkeep.audit.verify import VerifyResult, verify_chain
from agentkeep.context import RequestContext
from agentkeep.db.base import utcnow


class ChainBroken(RuntimeError):
    """The chain does not verify; it is neither signed nor pruned until someone looks at it."""

    def __init__(self, result: VerifyResult) -> None:
        self.result = result
        super().__init__(result.describe())


@dataclass(frozen=True, slots=True)
class PruneResult:
    deleted: int
    through_sequence: int | None
    anchor_hash: str | None


async def signed_checkpoint(
    session: AsyncSession, key: bytes | None, chain: str = GLOBAL_CHAIN
) -> Checkpoint:
    """Seal what is pending, verify the chain, then sign its head (never a tampered chain).

    `session` must not be in a transaction (sealing commits batch by batch).
    """
    await seal_with(session, [chain])
    result = await verify_chain(session, chain)
    if not result.ok:
        raise ChainBroken(result)
    return make_checkpoint(chain, result.head_sequence, result.head_hash, utcnow(), key)


async def prune_before(
    session: AsyncSession,
    before: datetime,
    chain: str = GLOBAL_CHAIN,
    *,
    checkpoint: Checkpoint | None = None,
) -> PruneResult:
    """Delete the records of `chain` older than `before` and move its anchor; the caller commits."""
    # Sealing takes the chain lock, held to the commit: no sealer interleaves with the deletion.
    await _seal_all(session, chain)
    through = await session.scalar(
        select(func.max(AuditLog.sequence)).where(AuditLog.chain == chain, AuditLog.timestamp < before)
    )
    if through is None:
        return PruneResult(deleted=0, through_sequence=None, anchor_hash=None)
    anchor_hash = await session.scalar(
        select(AuditLog.hash).where(AuditLog.chain == chain, AuditLog.sequence == through)
    )
    assert anchor_hash is not None
    deleted = await session.execute(
        delete(AuditLog)
        .where(AuditLog.chain == chain, AuditLog.sequence <= through)
        .execution_options(synchronize_session=False)
    )
    await session.execute(
        update(AuditChainHead)
        .where(AuditChainHead.chain == chain)
        .values(pruned_sequence=through, pruned_hash=anchor_hash)
        .execution_options(synchronize_session=False)
    )
    count = int(getattr(deleted, "rowcount", 0) or 0)
    await record(
        session,
        AuditAction.AUDIT_PRUNED,
        context=RequestContext.system(),
        actor_type=ActorType.SYSTEM,
        resource_type="audit_chain",
        resource_id=chain,
        details={
            "before": format_timestamp(before),
            "through_sequence": int(through),
            "anchor_hash": anchor_hash,
            "deleted": count,
            "checkpoint_sequence": checkpoint.sequence if checkpoint else None,
            "checkpoint_hash": checkpoint.hash if checkpoint else None,
        },
    )
    await _seal_all(session, chain)  # the audit_pruned record, under the lock already held
    return PruneResult(deleted=count, through_sequence=int(through), anchor_hash=anchor_hash)


async def _seal_all(session: AsyncSession, chain: str) -> None:
    while True:
        sealed = await seal_batch(session, chain, wait=True)
        if sealed is None or len(sealed) < SEAL_BATCH:
            return
