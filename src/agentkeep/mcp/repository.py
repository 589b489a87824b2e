"""MCP server queries, every one scoped to one organization (the re-encryption sweep aside)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from agentkeep.mcp.models import McpServer
from agentkeep.pagination import keyset_page


class McpServerRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, server: McpServer) -> None:
        self.session.add(server)
        await self.session.flush()

    async def page_in_org(
        self, org_id: uuid.UUID, limit: int, cursor: str | None
    ) -> tuple[list[McpServer], str | None]:
        """Newest first, keyed on (created_at, id)."""
        statement = select(McpServer).where(McpServer.org_id == org_id)
        return await keyset_page(
            self.session, statement, McpServer.created_at, McpServer.id, limit=limit, cursor=cursor
        )

    async def get_in_org(
        self, org_id: uuid.UUID, server_id: uuid.UUID, *, for_update: bool = False
    ) -> McpServer | None:
        statement = select(McpServer).where(McpServer.org_id == org_id, McpServer.id == server_id)
        if for_update:
            statement = statement.with_for_update()
        return (await self.session.scalars(statement)).first()

    async def named_in_org(self, org_id: uuid.UUID, name: str) -> McpServer | None:
        statement = select(McpServer).where(McpServer.org_id == org_id, McpServer.name == name)
        return (await self.session.scalars(statement)).first()

    async def names_in_org(self, org_id: uuid.UUID) -> list[str]:
        statement = select(McpServer.name).where(McpServer.org_id == org_id).order_by(McpServer.name)
        return list((await self.session.scalars(statement)).all())

    async def name_taken(self, org_id: uuid.UUID, name: str) -> bool:
        statement = select(McpServer.id).where(McpServer.org_id == org_id, McpServer.name == name)
        return (await self.session.execute(statement)).first() is not None

    async def store_tools(
        self,
        org_id: uuid.UUID,
        server_id: uuid.UUID,
        version: int,
        tools: list[dict[str, Any]],
        discovered_at: datetime,
    ) -> bool:
        """Cache a discovered list if the server is still at `version`; updated_at stays (the
        configuration did not change)."""
        statement = (
            update(McpServer)
            .where(McpServer.org_id == org_id, McpServer.id == server_id, McpServer.version == version)
            .values(tools=tools, tools_discovered_at=discovered_at, updated_at=McpServer.updated_at)
        )
        result = await self.session.execute(statement)
        return int(cast(CursorResult[Any], result).rowcount) == 1

    async def delete(self, server: McpServer) -> None:
        await self.session.delete(server)
        await self.session.flush()

    async def all_ids(self) -> list[uuid.UUID]:
        """Every server of every organization (for the re-encryption sweep)."""
        return list((await self.session.scalars(select(McpServer.id).order_by(McpServer.id))).all())

    async def locked(self, server_id: uuid.UUID) -> McpServer | None:
        statement = select(McpServer).where(McpServer.id == server_id).with_for_update()
        return (await self.session.scalars(statement)).first()
