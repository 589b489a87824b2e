"""Thread queries. Every one starts from the threads the viewer may see: the organization's,
narrowed to the viewer's own unless it may read them all."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from agentkeep.pagination import keyset_page
from agentkeep.threads.models import Thread


@dataclass(frozen=True, slots=True)
class Viewer:
    """Whose threads a caller sees: all of the organization's with `read_all`; otherwise
    those a user started (through any of their keys too), or those a key itself started."""

    org_id: uuid.UUID
    user_id: uuid.UUID
    api_key_id: uuid.UUID | None
    read_all: bool


class ThreadRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def _visible(self, viewer: Viewer) -> Select[Thread]:
        statement = select(Thread).where(Thread.org_id == viewer.org_id)
        if viewer.read_all:
            return statement
        if viewer.api_key_id is not None:
            return statement.where(Thread.created_by_api_key_id == viewer.api_key_id)
        return statement.where(Thread.created_by_user_id == viewer.user_id)

    async def get(self, viewer: Viewer, thread_id: uuid.UUID) -> Thread | None:
        return (await self.session.scalars(self._visible(viewer).where(Thread.id == thread_id))).first()

    async def lock(self, viewer: Viewer, thread_id: uuid.UUID) -> Thread | None:
        """Like get, holding the row lock until the transaction ends (PostgreSQL)."""
        statement = self._visible(viewer).where(Thread.id == thread_id).with_for_update()
        statement = statement.execution_options(populate_existing=True)
        return (await self.session.scalars(statement)).first()

    async def get_in_org(self, org_id: uuid.UUID, thread_id: uuid.UUID) -> Thread | None:
        """Any thread of the organization, whoever may see it (idempotent replays)."""
        statement = select(Thread).where(Thread.org_id == org_id, Thread.id == thread_id)
        return (await self.session.scalars(statement)).first()

    async def add(self, thread: Thread) -> None:
        self.session.add(thread)
        await self.session.flush()

    async def delete(self, thread: Thread) -> None:
        await self.session.delete(thread)
        await self.session.flush()

    async def page(
        self,
        viewer: Viewer,
        limit: int,
        cursor: str | None,
        *,
        agent_id: uuid.UUID | None,
        created_by: uuid.UUID | None,
    ) -> tuple[list[Thread], str | None]:
        """Visible threads, newest activity first, keyed on (last_activity_at, id)."""
        statement = self._visible(viewer)
        if agent_id is not None:
            statement = statement.where(Thread.agent_id == agent_id)
        if created_by is not None:
            statement = statement.where(Thread.created_by_user_id == created_by)
        return await keyset_page(
            self.session, statement, Thread.last_activity_at, Thread.id, limit=limit, cursor=cursor
        )
