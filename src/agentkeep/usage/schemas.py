"""Bodies of /api/usage."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, Field

# Years 0001 to 9999 (a datetime's range), ASCII digits only; written without lookahead so
# that every JSON Schema validator and generator reads it.
MONTH_PATTERN = r"^(?:[1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])-(?:0[1-9]|1[0-2])$"


class UsageQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    month: str | None = Field(
        default=None,
        pattern=MONTH_PATTERN,
        description="`YYYY-MM` (UTC), 0001-01 to 9999-12; the current month by default.",
    )


class AgentUsageRead(BaseModel):
    agent_id: uuid.UUID
    agent_name: str
    runs: int
    requests: int
    input_tokens: int
    output_tokens: int


class UsageRead(BaseModel):
    month: str
    budget: int | None = Field(description="Tokens the organization may use this month; null: unlimited.")
    used: int = Field(description="Input plus output tokens of the runs created in the month.")
    remaining: int | None = Field(description="Never negative; null when the budget is unlimited.")
    agents: list[AgentUsageRead]
