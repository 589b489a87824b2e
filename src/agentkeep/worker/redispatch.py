"""Queued runs nobody has vouched for lately: found, claimed and vouched for a batch at a time.

A queued run's `dispatched_at` says when it was last handed to the queue, or last vouched
for by whatever holds it (an in-process runner refreshes it for the runs it holds in
memory; a procrastinate job vouches by existing, see `jobrows`). A run with none, or an old
one, is a candidate; the holder filters out what it still holds, and the sweep claims the
rest with one conditional UPDATE, so of several sweepers one wins each run.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import datetime

from sqlalchemy import Select, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from agentkeep.runs.models import Run
from agentkeep.runs.states import RunStatus
from agentkeep.worker.leases import turn_is_next

# Run ids per statement: well under SQLite's and asyncpg's bound-parameter limits.
CHUNK = 500


def _stale(stale_before: datetime) -> tuple[ColumnElement[bool], ...]:
    return (
        Run.status == RunStatus.QUEUED,
        Run.cancel_requested_at.is_(None),
        or_(Run.dispatched_at.is_(None), Run.dispatched_at < stale_before),
    )


def candidates(*, stale_before: datetime, limit: int) -> Select[uuid.UUID]:
    """Claimable queued runs not dispatched (or vouched for) since `stale_before`, oldest first.

    A thread turn waiting behind an unfinished earlier turn is left out: no runner could claim
    it, and the turn before it dispatches it when it ends.
    """
    return select(Run.id).where(*_stale(stale_before), turn_is_next()).order_by(Run.created_at).limit(limit)


async def claim(
    session: AsyncSession, run_ids: Collection[uuid.UUID], *, now: datetime, stale_before: datetime
) -> list[uuid.UUID]:
    """Take the right to re-dispatch these runs (those still stale): one UPDATE, the winners back."""
    if not run_ids:
        return []
    result = await session.scalars(
        update(Run)
        .where(Run.id.in_(sorted(run_ids)), *_stale(stale_before))
        .values(dispatched_at=now)
        .returning(Run.id)
        .execution_options(synchronize_session=False)
    )
    return list(result.all())


async def vouch(
    session: AsyncSession, run_ids: Collection[uuid.UUID], *, now: datetime, refresh_before: datetime
) -> None:
    """Mark queued runs a live holder has as dispatched now (those not marked since `refresh_before`)."""
    ordered = sorted(run_ids)
    for start in range(0, len(ordered), CHUNK):
        await session.execute(
            update(Run)
            .where(
                Run.id.in_(ordered[start : start + CHUNK]),
                Run.status == RunStatus.QUEUED,
                or_(Run.dispatched_at.is_(None), Run.dispatched_at < refresh_before),
            )
            .values(dispatched_at=now)
            .execution_options(synchronize_session=False)
        )
