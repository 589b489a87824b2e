"""Bodies of /api/runs/{run_id}/approvals."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from agentkeep.agents.schemas import storable
from agentkeep.approvals.models import REASON_MAX, TOOL_CALL_ID_MAX

MAX_DECISIONS = 64
Decision = Literal["approve", "deny"]


class ToolCallDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tool_call_id: str = Field(
        min_length=1, max_length=TOOL_CALL_ID_MAX, description="From `approval_requested`."
    )
    decision: Decision
    reason: Annotated[str, AfterValidator(storable)] | None = Field(
        default=None,
        max_length=REASON_MAX,
        description="Why; a denial's reason is what the model is told.",
    )


class ApprovalDecisions(BaseModel):
    """Decisions on some or all of the calls the run waits on; it resumes once all are decided."""

    model_config = ConfigDict(extra="forbid")

    decisions: list[ToolCallDecision] = Field(min_length=1, max_length=MAX_DECISIONS)

    @model_validator(mode="after")
    def _each_call_once(self) -> Self:
        ids = [decision.tool_call_id for decision in self.decisions]
        repeated = sorted({call_id for call_id in ids if ids.count(call_id) > 1})
        if repeated:
            raise PydanticCustomError(
                "duplicate_tool_call", "decide each call once; repeated: {ids}", {"ids": ", ".join(repeated)}
            )
        return self


class ToolCallApprovalRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    tool_call_id: str
    tool: str = Field(description="As the agent names it, e.g. `mcp:github/create_issue`.")
    args: Any
    round: int = Field(description="Which pause of the run asked (1, 2, ...).")
    requested_at: datetime
    decision: Decision | None
    reason: str | None
    decided_by: uuid.UUID | None
    decided_by_key: uuid.UUID | None = Field(description="The API key that decided, if one did.")
    decided_at: datetime | None


class RunApprovalsRead(BaseModel):
    run_id: uuid.UUID
    run_status: str
    state: Literal["none", "waiting", "decided", "expired"] = Field(
        description=(
            "`waiting`: decisions pending; `decided`: all in, the run resumes; "
            "`expired`: none came in time; `none`: the run never paused."
        )
    )
    deadline: datetime | None = Field(description="When the run ends `expired` if a call is still pending.")
    pending: list[str] = Field(description="The calls still waiting for a decision.")
    calls: list[ToolCallApprovalRead]
