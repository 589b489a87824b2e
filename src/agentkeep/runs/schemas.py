"""Bodies of /api/agents/{id}/runs and /api/runs."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any

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
        return cls.from_row({column.key: getattr(run, column.key) for column in READ_COLUMNS})

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> RunRead:
        """A run from its READ_COLUMNS (a list reads them as rows, db/rows.py)."""
        usage = {
            "requests": row["requests"],
            "input_tokens": row["input_tokens"],
            "output_tokens": row["output_tokens"],
        }
        return cls.model_validate({**row, "stop_reason": row["stop_reason"] or None, "usage": usage})


# The columns RunRead shows (the three usage counters become `usage`).
READ_COLUMNS = (
    Run.id,
    Run.org_id,
    Run.agent_id,
    Run.agent_version,
    Run.status,
    Run.stop_reason,
    Run.thread_id,
    Run.thread_turn,
    Run.input,
    Run.output,
    Run.error,
    Run.requests,
    Run.input_tokens,
    Run.output_tokens,
    Run.attempts,
    Run.created_at,
    Run.started_at,
    Run.finished_at,
    Run.cancel_requested_at,
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
