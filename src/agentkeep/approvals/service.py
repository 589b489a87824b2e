"""Deciding the tool calls a paused run waits on. No HTTP objects, never a commit.

A decision is taken only while the run is `requires_action`: a conditional UPDATE of the run
row serialises deciders (and the expiry sweep, and cancellation), so a call is decided once.
Every decision is audited (`tool_call_approved`, `tool_call_denied`) and written as an
`approval_decided` event. When the last pending call of the pause is decided, the run goes
back to `queued` and is dispatched once the transaction commits, like a new run; a worker
resumes it from the stored messages (see approvals/pause.py).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import JsonValue
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from agentkeep.approvals.models import RunApproval, RunApprovalCall
from agentkeep.approvals.pause import DECIDED, WAITING
from agentkeep.approvals.repository import ApprovalRepository, rows
from agentkeep.approvals.schemas import RunApprovalsRead, ToolCallApprovalRead, ToolCallDecision
from agentkeep.audit.actions import AuditAction
from agentkeep.audit.service import AuditService
from agentkeep.db.session import after_commit
from agentkeep.errors import Conflict, InvalidInput
from agentkeep.runs.models import Run
from agentkeep.runs.repository import RunRepository, append_event
from agentkeep.runs.service import RunActor, RunNotFound
from agentkeep.runs.states import EventKind, RunStatus
from agentkeep.worker.queue import RunQueue


class RunNotWaiting(Conflict):
    type_slug = "run-not-waiting-for-approval"
    title = "Run not waiting for approval"


class ToolCallAlreadyDecided(Conflict):
    type_slug = "tool-call-already-decided"
    title = "Tool call already decided"


class UnknownToolCall(InvalidInput):
    type_slug = "unknown-tool-call"
    title = "Unknown tool call"


@dataclass(frozen=True, slots=True)
class Decided:
    view: RunApprovalsRead
    resumed: bool


def _view(run: Run, approval: RunApproval | None, calls: list[RunApprovalCall]) -> RunApprovalsRead:
    current = [call for call in calls if approval is not None and call.round == approval.round]
    return RunApprovalsRead(
        run_id=run.id,
        run_status=run.status,
        state="none" if approval is None else approval.state,
        deadline=approval.deadline if approval is not None and approval.state == WAITING else None,
        pending=[call.tool_call_id for call in current if call.decision is None],
        calls=[ToolCallApprovalRead.model_validate(call) for call in calls],
    )


class ApprovalService:
    def __init__(self, session: AsyncSession, audit: AuditService) -> None:
        self.session = session
        self.runs = RunRepository(session)
        self.approvals = ApprovalRepository(session)
        self.audit = audit

    async def _visible(self, actor: RunActor, run_id: uuid.UUID) -> Run:
        run = await self.runs.get_visible(actor.viewer, run_id)
        if run is None:
            raise RunNotFound("No such run.")
        return run

    async def read(self, actor: RunActor, run_id: uuid.UUID) -> RunApprovalsRead:
        run = await self._visible(actor, run_id)
        return _view(run, await self.approvals.approval(run.id), await self.approvals.calls(run.id))

    async def decide(
        self, actor: RunActor, run_id: uuid.UUID, decisions: list[ToolCallDecision], queue: RunQueue
    ) -> Decided:
        run = await self._visible(actor, run_id)
        now = datetime.now(UTC)
        # Serialises deciders, the expiry sweep and cancellation on the run row.
        locked = await self.session.execute(
            update(Run)
            .where(Run.id == run.id, Run.status == RunStatus.REQUIRES_ACTION.value)
            .values(updated_at=now)
            .execution_options(synchronize_session=False)
        )
        approval = await self.approvals.approval(run.id)
        if rows(locked) != 1 or approval is None or approval.state != WAITING:
            run = await self.runs.reload(run)
            raise RunNotWaiting(
                f"This run is {run.status}, not waiting for a decision on tool calls.",
                extra={"run_status": run.status},
            )
        calls = {call.tool_call_id: call for call in await self.approvals.calls(run.id, approval.round)}
        unknown = sorted(d.tool_call_id for d in decisions if d.tool_call_id not in calls)
        if unknown:
            pending = sorted(call_id for call_id, call in calls.items() if call.decision is None)
            raise UnknownToolCall(
                f"The run waits on no tool call {', '.join(map(repr, unknown))}.",
                extra={"unknown": unknown, "pending": pending},
            )
        decided = sorted(d.tool_call_id for d in decisions if calls[d.tool_call_id].decision is not None)
        if decided:
            raise ToolCallAlreadyDecided(
                f"Already decided: {', '.join(map(repr, decided))}; a decision is final.",
                extra={"decided": decided},
            )
        for decision in decisions:
            await self._record(actor, run, calls[decision.tool_call_id], decision, now)
        resumed = all(call.decision is not None for call in calls.values())
        if resumed:
            await self._resume(run, approval, queue, now)
        run = await self.runs.reload(run)
        approval = await self.approvals.approval(run.id)
        return Decided(_view(run, approval, await self.approvals.calls(run.id)), resumed)

    async def _record(
        self,
        actor: RunActor,
        run: Run,
        call: RunApprovalCall,
        decision: ToolCallDecision,
        now: datetime,
    ) -> None:
        call.decision = decision.decision
        call.reason = decision.reason
        call.decided_by = actor.user_id
        call.decided_by_key = actor.api_key_id
        call.decided_at = now
        await self.session.flush()
        identity: dict[str, JsonValue] = {"tool": call.tool, "tool_call_id": call.tool_call_id}
        event: dict[str, JsonValue] = {
            **identity,
            "decision": decision.decision,
            "decided_by": str(actor.user_id),
        }
        details: dict[str, object] = {**identity, "agent_id": str(run.agent_id)}
        if decision.reason is not None:
            event["reason"] = decision.reason
            details["reason"] = decision.reason
        if actor.api_key_id is not None:
            event["api_key_id"] = str(actor.api_key_id)
            details["key_id"] = str(actor.api_key_id)  # "api_key_id" would be redacted by name
        await append_event(self.session, run.id, EventKind.APPROVAL_DECIDED, event, now=now)
        await self.audit.record(
            AuditAction.TOOL_CALL_APPROVED
            if decision.decision == "approve"
            else AuditAction.TOOL_CALL_DENIED,
            user_id=actor.user_id,
            org_id=actor.org_id,
            actor_type=actor.actor_type,
            resource_type="run",
            resource_id=run.id,
            details=details,
        )

    async def _resume(self, run: Run, approval: RunApproval, queue: RunQueue, now: datetime) -> None:
        """Every call decided: back to the queue; a worker resumes from the stored messages."""
        await self.session.execute(
            update(Run)
            .where(Run.id == run.id, Run.status == RunStatus.REQUIRES_ACTION.value)
            .values(status=RunStatus.QUEUED.value, dispatched_at=None, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        await self.approvals.set_state(run.id, DECIDED)
        await append_event(
            self.session, run.id, EventKind.STATUS, {"status": RunStatus.QUEUED.value}, now=now
        )

        async def dispatch() -> None:
            await queue.dispatch(run.id)

        after_commit(self.session, dispatch)
