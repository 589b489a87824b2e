"""Ending a run that waits for approval without resuming it: no decision in time (`expired`,
from the recovery sweeps of workers and of the in-process runner), or a cancellation.

Both are conditional UPDATEs of a `requires_action` run, like a decision, so exactly one of
them wins. No runner holds a paused run, so these write its end themselves: the status event,
and for a thread turn the messages it exchanged so far (up to its last complete step) into
the thread's history, as a runner does when a turn ends.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from pydantic_ai.messages import (
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelRequest,
    ModelResponse,
    ToolReturnPart,
)
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agentkeep.approvals.models import RunApproval, RunApprovalCall
from agentkeep.approvals.pause import EXPIRED, WAITING
from agentkeep.approvals.repository import rows
from agentkeep.audit.actions import ActorType, AuditAction, AuditStatus
from agentkeep.audit.service import record
from agentkeep.context import RequestContext
from agentkeep.runs.models import Run
from agentkeep.runs.repository import append_event
from agentkeep.runs.states import EventKind, RunStatus, StopReason
from agentkeep.threads.history import ThreadHistory
from agentkeep.webhooks import outbox as webhook_outbox
from agentkeep.webhooks.events import EventType

BATCH = 100
EXPIRED_ERROR = "no decision on its tool calls came within the agent's approval_timeout_seconds"


@dataclass(frozen=True, slots=True)
class EndedRun:
    run_id: uuid.UUID
    thread_id: uuid.UUID | None


def settled(messages: Sequence[ModelMessage]) -> list[ModelMessage]:
    """`messages` up to the last step whose tool calls all got results: what a thread keeps of
    a turn that ended while calls were pending (sent again, a call without its result is
    refused by providers)."""
    kept = list(messages)
    for index in range(len(kept) - 1, -1, -1):
        message = kept[index]
        if not isinstance(message, ModelResponse) or not message.tool_calls:
            continue
        answered = {
            part.tool_call_id
            for later in kept[index + 1 :]
            if isinstance(later, ModelRequest)
            for part in later.parts
            if isinstance(part, ToolReturnPart)
        }
        if any(call.tool_call_id not in answered for call in message.tool_calls):
            return kept[:index]
        break
    return kept


async def write_turn_history(
    session: AsyncSession, run_id: uuid.UUID, thread_id: uuid.UUID | None, now: datetime
) -> None:
    """A paused turn that ends: its thread keeps what it said up to its last complete step."""
    if thread_id is None:
        return
    approval = await session.get(RunApproval, run_id)
    if approval is None:
        return
    messages = settled(ModelMessagesTypeAdapter.validate_python(approval.messages))
    await ThreadHistory(session, thread_id).append(run_id, messages, now)


async def expire_due(sessionmaker: async_sessionmaker[AsyncSession], *, now: datetime) -> list[EndedRun]:
    """End `expired` every paused run whose deadline passed: event, audit `approval_expired`."""
    async with sessionmaker() as session:
        due = (
            (
                await session.execute(
                    select(RunApproval.run_id)
                    .join(Run, Run.id == RunApproval.run_id)
                    .where(
                        RunApproval.state == WAITING,
                        RunApproval.deadline < now,
                        Run.status == RunStatus.REQUIRES_ACTION.value,
                    )
                    .order_by(RunApproval.deadline)
                    .limit(BATCH)
                )
            )
            .scalars()
            .all()
        )
    ended: list[EndedRun] = []
    for run_id in due:
        async with sessionmaker() as session, session.begin():
            run = await _expire(session, run_id, now)
        if run is not None:
            ended.append(run)
    return ended


async def _expire(session: AsyncSession, run_id: uuid.UUID, now: datetime) -> EndedRun | None:
    result = await session.execute(
        update(Run)
        .where(Run.id == run_id, Run.status == RunStatus.REQUIRES_ACTION.value)
        .values(
            status=RunStatus.EXPIRED.value,
            stop_reason=StopReason.EXPIRED.value,
            error=EXPIRED_ERROR,
            finished_at=now,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if rows(result) != 1:
        return None
    run = (
        await session.execute(select(Run.org_id, Run.agent_id, Run.thread_id).where(Run.id == run_id))
    ).one()
    approval = await session.get(RunApproval, run_id)
    assert approval is not None
    approval.state = EXPIRED
    pending = (
        await session.scalars(
            select(RunApprovalCall).where(
                RunApprovalCall.run_id == run_id,
                RunApprovalCall.round == approval.round,
                RunApprovalCall.decision.is_(None),
            )
        )
    ).all()
    await write_turn_history(session, run_id, run.thread_id, now)
    await append_event(
        session,
        run_id,
        EventKind.STATUS,
        {"status": RunStatus.EXPIRED.value, "stop_reason": StopReason.EXPIRED.value},
        now=now,
    )
    await webhook_outbox.record(
        session,
        org_id=run.org_id,
        type=EventType.RUN_EXPIRED,
        data={
            "run_id": str(run_id),
            "status": "expired",
            "stop_reason": "expired",
            "agent_id": str(run.agent_id),
        },
    )
    await record(
        session,
        AuditAction.APPROVAL_EXPIRED,
        context=RequestContext.system(),
        org_id=run.org_id,
        actor_type=ActorType.SYSTEM,
        resource_type="run",
        resource_id=run_id,
        status=AuditStatus.FAILURE,
        details={
            "agent_id": str(run.agent_id),
            "deadline": approval.deadline.isoformat(),
            "pending": [{"tool": call.tool, "tool_call_id": call.tool_call_id} for call in pending],
        },
    )
    return EndedRun(run_id, run.thread_id)
