"""Queries on the approval tables; callers scope runs to the organization first."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from agentkeep.agents.models import DEFAULT_APPROVERS, AgentVersion
from agentkeep.approvals.models import RunApproval, RunApprovalCall
from agentkeep.runs.models import Run


def rows(result: Any) -> int:
    return int(cast(CursorResult[Any], result).rowcount)


class ApprovalRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def approval(self, run_id: uuid.UUID) -> RunApproval | None:
        return await self.session.get(RunApproval, run_id, populate_existing=True)

    async def calls(self, run_id: uuid.UUID, round_: int | None = None) -> list[RunApprovalCall]:
        statement = select(RunApprovalCall).where(RunApprovalCall.run_id == run_id)
        if round_ is not None:
            statement = statement.where(RunApprovalCall.round == round_)
        statement = statement.order_by(RunApprovalCall.round, RunApprovalCall.requested_at)
        return list((await self.session.scalars(statement)).all())

    async def add_calls(self, calls: Sequence[RunApprovalCall]) -> None:
        self.session.add_all(calls)
        await self.session.flush()

    async def set_state(self, run_id: uuid.UUID, state: str) -> None:
        await self.session.execute(
            update(RunApproval)
            .where(RunApproval.run_id == run_id)
            .values(state=state)
            .execution_options(synchronize_session=False)
        )


async def approvers_of_run(session: AsyncSession, org_id: uuid.UUID, run_id: uuid.UUID) -> list[str] | None:
    """The `approvers` of the agent version a run of the organization executes; None when the
    organization has no such run. Versions written before approvers existed: the default."""
    statement = (
        select(AgentVersion.config)
        .join(Run, (Run.agent_id == AgentVersion.agent_id) & (Run.agent_version == AgentVersion.version))
        .where(Run.id == run_id, Run.org_id == org_id)
    )
    config = await session.scalar(statement)
    if config is None:
        return None
    approvers = config.get("approvers")
    return [str(role) for role in approvers] if isinstance(approvers, list) else list(DEFAULT_APPROVERS)
