"""A run's pause for approval, as stored and as read back to resume it.

The runner that holds the run's lease stores the pause (`store_pause`) in the transaction
that releases the lease and sets the run `requires_action`: the messages exchanged so far
(pydantic-ai's `ModelMessagesTypeAdapter`, as thread histories are stored), the usage and
steps so far, and the calls waiting for a decision. Whichever runner claims the run once
every call is decided reads it back (`load_resume`) and continues the same pydantic-ai run:
`message_history` = the stored messages, `deferred_tool_results` = the decisions (approve:
`ToolApproved`, deny: `ToolDenied` with the reason). Nothing that ran before the pause runs
again: the model is not asked again for the response that made the calls, and calls of that
response that needed no approval already have their results in the messages.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import JsonValue
from pydantic_ai.messages import ModelMessage, ModelMessagesTypeAdapter
from pydantic_ai.tools import DeferredToolResults, ToolApproved, ToolDenied
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from agentkeep.approvals.models import RunApproval, RunApprovalCall

WAITING = "waiting"
DECIDED = "decided"
EXPIRED = "expired"
DEFAULT_DENIAL = "The tool call was denied by a person."


@dataclass(frozen=True, slots=True)
class PendingCall:
    tool_call_id: str
    tool: str  # as the agent names it
    args: JsonValue


@dataclass(frozen=True, slots=True)
class Paused:
    """What the run had done when it paused."""

    messages: Sequence[ModelMessage]
    requests: int
    input_tokens: int
    output_tokens: int
    steps: int


@dataclass(frozen=True, slots=True)
class Resume:
    """A decided pause, to continue from."""

    messages: list[ModelMessage]
    requests: int
    input_tokens: int
    output_tokens: int
    steps: int
    results: DeferredToolResults
    # tool_call_id -> (tool as the agent names it, "approve" | "deny")
    decisions: dict[str, tuple[str, str]]


async def store_pause(
    session: AsyncSession,
    *,
    run_id: uuid.UUID,
    org_id: uuid.UUID,
    paused: Paused,
    calls: Sequence[PendingCall],
    timeout_seconds: float,
    now: datetime,
) -> datetime:
    """Store the pause (a later pause of the same run starts the next round); the deadline."""
    deadline = now + timedelta(seconds=timeout_seconds)
    approval = await session.get(RunApproval, run_id)
    messages = ModelMessagesTypeAdapter.dump_python(list(paused.messages), mode="json")
    if approval is None:
        approval = RunApproval(run_id=run_id, org_id=org_id, round=1)
        session.add(approval)
    else:
        approval.round += 1
    approval.state = WAITING
    approval.messages = messages
    approval.requests = paused.requests
    approval.input_tokens = paused.input_tokens
    approval.output_tokens = paused.output_tokens
    approval.steps = paused.steps
    approval.paused_at = now
    approval.deadline = deadline
    await session.flush()
    session.add_all(
        RunApprovalCall(
            run_id=run_id,
            tool_call_id=call.tool_call_id,
            round=approval.round,
            tool=call.tool,
            args=call.args,
            requested_at=now,
        )
        for call in calls
    )
    await session.flush()
    return deadline


async def load_resume(session: AsyncSession, run_id: uuid.UUID) -> Resume | None:
    """The decided pause to continue from; None when the run has none (start from the input)."""
    approval = await session.get(RunApproval, run_id, populate_existing=True)
    if approval is None or approval.state != DECIDED:
        return None
    statement = select(RunApprovalCall).where(
        RunApprovalCall.run_id == run_id, RunApprovalCall.round == approval.round
    )
    calls = list((await session.scalars(statement)).all())
    approvals: dict[str, bool | ToolApproved | ToolDenied] = {}
    decisions: dict[str, tuple[str, str]] = {}
    for call in calls:
        if call.decision == "approve":
            approvals[call.tool_call_id] = ToolApproved()
        else:
            approvals[call.tool_call_id] = ToolDenied(call.reason or DEFAULT_DENIAL)
        decisions[call.tool_call_id] = (call.tool, call.decision or "deny")
    return Resume(
        messages=ModelMessagesTypeAdapter.validate_python(approval.messages),
        requests=approval.requests,
        input_tokens=approval.input_tokens,
        output_tokens=approval.output_tokens,
        steps=approval.steps,
        results=DeferredToolResults(approvals=approvals),
        decisions=decisions,
    )
