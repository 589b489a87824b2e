"""Bodies of /api/agents/{id}/runs and /api/runs."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from agentkeep.agents.schemas import storable
from agentkeep.pagination import DEFAULT_LIMIT, MAX_LIMIT, CursorParam
from agentkeep.runs.models import RUN_INPUT_MAX, Run
from agentkeep.runs.states import RunStatus, StopReason


class RunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: Annotated[
        str,
        Field(min_length=1, max_length=RUN_INPUT_MAX, description="The task for the agent."),
        AfterValidator(storable),
    ]


class RunUsage(BaseModel):
    requests: int
    input_tokens: int
    output_tokens: int


class RunRead(BaseModel):
    id: uuid.UUID
    org_id: uuid.UUID
    agent_id: uuid.UUID
    agent_version: int
    status: RunStatus
    stop_reason: StopReason | None
    thread_id: uuid.UUID | None = Field(description="The thread, when the run is one of its turns.")
    thread_turn: int | None = Field(description="The turn's number in its thread (1, 2, ...).")
    input: str
    output: str | None
    error: str | None
    usage: RunUsage
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    cancel_requested_at: datetime | None

    @classmethod
    def from_run(cls, run: Run) -> RunRead:
        return cls(
            id=run.id,
            org_id=run.org_id,
            agent_id=run.agent_id,
            agent_version=run.agent_version,
            thread_id=run.thread_id,
            thread_turn=run.thread_turn,
            status=RunStatus(run.status),
            stop_reason=StopReason(run.stop_reason) if run.stop_reason else None,
            input=run.input,
            output=run.output,
            error=run.error,
            usage=RunUsage(
                requests=run.requests, input_tokens=run.input_tokens, output_tokens=run.output_tokens
            ),
            attempts=run.attempts,
            created_at=run.created_at,
            started_at=run.started_at,
            finished_at=run.finished_at,
            cancel_requested_at=run.cancel_requested_at,
        )


class RunPage(BaseModel):
    items: list[RunRead]
    next_cursor: str | None


class RunListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent_id: uuid.UUID | None = None
    status: RunStatus | None = None
    thread_id: uuid.UUID | None = None
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: CursorParam | None = None
