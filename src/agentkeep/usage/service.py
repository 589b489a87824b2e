"""A month of the organization's usage: tokens against the budget, and per agent."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from agentkeep.runs.budget import monthly_budget, tokens_used_this_month
from agentkeep.runs.repository import RunRepository
from agentkeep.usage.schemas import AgentUsageRead, UsageRead


def parse_month(month: str | None, now: datetime) -> datetime:
    """The first instant (UTC) of `YYYY-MM` (already matched against MONTH_PATTERN), or of
    the current month."""
    if month is None:
        return datetime(now.year, now.month, 1, tzinfo=UTC)
    year, number = (int(part) for part in month.split("-"))
    return datetime(year, number, 1, tzinfo=UTC)


class UsageService:
    def __init__(self, session: AsyncSession, default_budget: int | None) -> None:
        self.session = session
        self.runs = RunRepository(session)
        self.default_budget = default_budget

    async def month(self, org_id: uuid.UUID, month: str | None) -> UsageRead:
        start = parse_month(month, datetime.now(UTC))
        budget = await monthly_budget(self.session, org_id, self.default_budget)
        used = await tokens_used_this_month(self.session, org_id, start)
        agents = await self.runs.usage_by_agent(org_id, start)
        return UsageRead(
            month=f"{start.year:04d}-{start.month:02d}",
            budget=budget,
            used=used,
            remaining=None if budget is None else max(0, budget - used),
            agents=[
                AgentUsageRead(
                    agent_id=row.agent_id,
                    agent_name=row.agent_name,
                    runs=row.runs,
                    requests=row.requests,
                    input_tokens=row.input_tokens,
                    output_tokens=row.output_tokens,
                )
                for row in agents
            ],
        )
