"""Agent queries, every one scoped to an organization. Archived agents are invisible here
except where a caller asks for a pinned version (runs keep executing what they pinned)."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from agentkeep.agents.models import Agent, AgentVersion


class AgentRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_in_org(self, org_id: uuid.UUID, agent_id: uuid.UUID) -> Agent | None:
        """The organization's live (not archived) agent, or None."""
        statement = select(Agent).where(
            Agent.org_id == org_id, Agent.id == agent_id, Agent.archived_at.is_(None)
        )
        return (await self.session.scalars(statement)).first()

    async def get_version(self, org_id: uuid.UUID, agent_id: uuid.UUID, version: int) -> AgentVersion | None:
        """One pinned configuration, archived agents included."""
        statement = select(AgentVersion).where(
            AgentVersion.org_id == org_id,
            AgentVersion.agent_id == agent_id,
            AgentVersion.version == version,
        )
        return (await self.session.scalars(statement)).first()
