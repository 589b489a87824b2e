"""What deleting a thread erases: its messages, and the content of its runs.

The runs themselves stay (usage, status, stop reason, timings: accounting and budgets need
them), without their input, output, error or any event but status changes. A turn still
queued or running is ended first, `cancelled`, and its lease taken from its runner, whose
next fenced write then fails (`worker.leases.fence`): nothing it says afterwards is stored.
The audit trail keeps the fact of the deletion, never the content.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from agentkeep.approvals.models import RunApproval
from agentkeep.notify import topics
from agentkeep.notify.announce import announce
from agentkeep.runs.models import Run, RunEvent
from agentkeep.runs.repository import append_event
from agentkeep.runs.states import ACTIVE_STATUSES, EventKind, RunStatus, StopReason
from agentkeep.threads.models import ThreadMessage


@dataclass(frozen=True, slots=True)
class Erased:
    runs: int
    runs_cancelled: int
    messages: int


def _rows(result: Any) -> int:
    return int(cast(CursorResult[Any], result).rowcount)


async def erase_thread_content(session: AsyncSession, thread_id: uuid.UUID, now: datetime) -> Erased:
    """End the thread's unfinished turns and erase its messages and run content."""
    unfinished = list(
        (
            await session.scalars(
                select(Run.id).where(Run.thread_id == thread_id, Run.status.in_(sorted(ACTIVE_STATUSES)))
            )
        ).all()
    )
    if unfinished:
        await session.execute(
            update(Run)
            .where(Run.id.in_(unfinished), Run.status.in_(sorted(ACTIVE_STATUSES)))
            .values(
                status=RunStatus.CANCELLED,
                stop_reason=StopReason.CANCELLED,
                cancel_requested_at=func.coalesce(Run.cancel_requested_at, now),
                lease_owner=None,
                lease_expires_at=None,
                finished_at=now,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
    runs = select(Run.id).where(Run.thread_id == thread_id).scalar_subquery()
    # A turn that paused for approval kept its messages and the calls' arguments: erased too.
    await session.execute(
        delete(RunApproval).where(RunApproval.run_id.in_(runs)).execution_options(synchronize_session=False)
    )
    await session.execute(
        delete(RunEvent)
        .where(RunEvent.run_id.in_(runs), RunEvent.kind != EventKind.STATUS)
        .execution_options(synchronize_session=False)
    )
    erased = await session.execute(
        update(Run)
        .where(Run.thread_id == thread_id)
        .values(input="", output=None, error=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    for run_id in unfinished:
        announce(session, topics.run_cancel(run_id))  # its runner finds its lease gone
        await append_event(
            session,
            run_id,
            EventKind.STATUS,
            {"status": RunStatus.CANCELLED, "stop_reason": StopReason.CANCELLED},
            now=now,
        )
    messages = await session.execute(
        delete(ThreadMessage)
        .where(ThreadMessage.thread_id == thread_id)
        .execution_options(synchronize_session=False)
    )
    return Erased(runs=_rows(erased), runs_cancelled=len(unfinished), messages=_rows(messages))
