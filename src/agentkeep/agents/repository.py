"""Agent queries, every one scoped to an organization. Archived agents are invisible here
except where a caller asks for a pinned version (runs keep executing what they pinned) or
for the agent an idempotency key created."""

from __future__ import annotations

import functools
import uuid
from typing import Any

from sqlalchemy import Integer, Select, Uuid, and_, bindparam, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from agentkeep.agents.models import Agent, AgentVersion
from agentkeep.agents.schemas import AgentRead
from agentkeep.db.base import UTCDateTime
from agentkeep.db.rows import RowQuery, columns_for
from agentkeep.pagination import InvalidCursor, decode_cursor, decode_position, encode_cursor, position_cursor

# Versions are 32-bit integers in the database; a cursor beyond that is not ours.
MAX_VERSION = 2**31 - 1


@functools.cache
def _listed_in_org(*, status: bool, name: bool, after: bool) -> RowQuery:
    """The organization's live agents as the list shows them (rows, db/rows.py), newest
    first, keyed on (created_at, id): one statement per combination of filters and cursor,
    built once with everything as a parameter, since the list is the hottest read there is.
    (The organization's type is explicit: a foreign key column's type is only known once its
    target table is, after this module is imported.)"""
    statement = select(*columns_for(Agent, AgentRead)).where(
        Agent.org_id == bindparam("org_id", type_=Uuid()), Agent.archived_at.is_(None)
    )
    if status:
        statement = statement.where(Agent.status == bindparam("status"))
    if name:
        statement = statement.where(Agent.name == bindparam("name"))
    if after:
        moment = bindparam("moment", type_=UTCDateTime())
        statement = statement.where(
            or_(Agent.created_at < moment, and_(Agent.created_at == moment, Agent.id < bindparam("after")))
        )
    statement = statement.order_by(Agent.created_at.desc(), Agent.id.desc())
    return RowQuery(statement.limit(bindparam("limit", type_=Integer())))


class AgentRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def _live(self, org_id: uuid.UUID) -> Select[Agent]:
        return select(Agent).where(Agent.org_id == org_id, Agent.archived_at.is_(None))

    async def get_in_org(self, org_id: uuid.UUID, agent_id: uuid.UUID) -> Agent | None:
        """The organization's live (not archived) agent, or None."""
        return (await self.session.scalars(self._live(org_id).where(Agent.id == agent_id))).first()

    async def get_version(self, org_id: uuid.UUID, agent_id: uuid.UUID, version: int) -> AgentVersion | None:
        """One pinned configuration, archived agents included."""
        statement = select(AgentVersion).where(
            AgentVersion.org_id == org_id,
            AgentVersion.agent_id == agent_id,
            AgentVersion.version == version,
        )
        return (await self.session.scalars(statement)).first()

    async def lock_in_org(self, org_id: uuid.UUID, agent_id: uuid.UUID) -> Agent | None:
        """Like get_in_org, holding the row lock until the transaction ends (PostgreSQL;
        SQLite serializes writers anyway), so concurrent changes apply one after the other."""
        statement = self._live(org_id).where(Agent.id == agent_id).with_for_update()
        # populate_existing: a row this session loaded before the lock is read again.
        statement = statement.execution_options(populate_existing=True)
        return (await self.session.scalars(statement)).first()

    async def get_any_in_org(self, org_id: uuid.UUID, agent_id: uuid.UUID) -> Agent | None:
        """The organization's agent, archived or not."""
        statement = select(Agent).where(Agent.org_id == org_id, Agent.id == agent_id)
        return (await self.session.scalars(statement)).first()

    async def name_taken(self, org_id: uuid.UUID, name: str, *, other_than: uuid.UUID | None = None) -> bool:
        statement = self._live(org_id).where(Agent.name == name)
        if other_than is not None:
            statement = statement.where(Agent.id != other_than)
        return (await self.session.scalars(statement.limit(1))).first() is not None

    async def add(self, *rows: Agent | AgentVersion) -> None:
        """Add and flush, so a unique violation surfaces here and not at commit."""
        self.session.add_all(rows)
        await self.session.flush()

    async def page_in_org(
        self, org_id: uuid.UUID, limit: int, cursor: str | None, *, status: str | None, name: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Live agents as AgentRead rows, newest first, keyed on (created_at, id)."""
        parameters: dict[str, Any] = {"org_id": org_id, "status": status, "name": name, "limit": limit + 1}
        if cursor:
            parameters["moment"], parameters["after"] = decode_position(cursor)
        query = _listed_in_org(status=status is not None, name=name is not None, after=bool(cursor))
        rows = await query.rows(self.session, parameters)
        if len(rows) <= limit:
            return rows, None
        rows = rows[:limit]
        return rows, position_cursor(rows[-1]["created_at"], rows[-1]["id"])

    async def versions_page(
        self, org_id: uuid.UUID, agent_id: uuid.UUID, limit: int, cursor: str | None
    ) -> tuple[list[AgentVersion], str | None]:
        """An agent's versions, newest first, keyed on the version number."""
        statement = select(AgentVersion).where(
            AgentVersion.org_id == org_id, AgentVersion.agent_id == agent_id
        )
        if cursor:
            before = decode_cursor(cursor).get("v")
            if not isinstance(before, int) or isinstance(before, bool) or not 1 < before <= MAX_VERSION:
                raise InvalidCursor("The cursor is not one this API returned.")
            statement = statement.where(AgentVersion.version < before)
        statement = statement.order_by(AgentVersion.version.desc()).limit(limit + 1)
        rows = list((await self.session.scalars(statement)).all())
        if len(rows) <= limit:
            return rows, None
        rows = rows[:limit]
        return rows, encode_cursor({"v": rows[-1].version})
