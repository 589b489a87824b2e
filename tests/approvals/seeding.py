"""Runs paused for approval, written as a runner leaves them (through the product's own
`store_pause`), for tests that need one without driving a model to it."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI
from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, ToolCallPart, UserPromptPart

from agentkeep.approvals.pause import Paused, PendingCall, store_pause
from agentkeep.runs.models import Run
from agentkeep.runs.repository import append_event
from agentkeep.runs.states import EventKind, RunStatus

DEFAULT_CALLS = (("call_1", "calculator", {"expression": "1+1"}),)


async def seed_paused_run(
    app: FastAPI,
    org_id: str,
    agent_id: str,
    calls: Sequence[tuple[str, str, dict[str, Any]]] = DEFAULT_CALLS,
    *,
    timeout_seconds: float = 3600,
) -> str:
    now = datetime.now(UTC)
    run = Run(
        id=uuid.uuid4(),
        org_id=uuid.UUID(org_id),
        agent_id=uuid.UUID(agent_id),
        agent_version=1,
        input="seeded",
        status=RunStatus.REQUIRES_ACTION.value,
        attempts=1,
        started_at=now,
        created_at=now,
        dispatched_at=now,
    )
    messages: list[ModelMessage] = [
        ModelRequest(parts=[UserPromptPart("seeded")]),
        ModelResponse(
            parts=[ToolCallPart(tool, args, tool_call_id=call_id) for call_id, tool, args in calls]
        ),
    ]
    async with app.state.sessionmaker() as session, session.begin():
        session.add(run)
        await session.flush()
        await append_event(session, run.id, EventKind.STATUS, {"status": RunStatus.QUEUED.value})
        await store_pause(
            session,
            run_id=run.id,
            org_id=run.org_id,
            paused=Paused(messages, requests=1, input_tokens=10, output_tokens=5, steps=1),
            calls=[PendingCall(call_id, tool, args) for call_id, tool, args in calls],
            timeout_seconds=timeout_seconds,
            now=now,
        )
        await append_event(session, run.id, EventKind.STATUS, {"status": RunStatus.REQUIRES_ACTION.value})
    return str(run.id)
