"""Thread queries. Every one starts from the threads the viewer may see: the organization's,
narrowed to the viewer's own unless it may read them all."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession

from agentkeep.db.rows import columns_for
from agentkeep.pagination import InvalidCursor, decode_cursor, encode_cursor, keyset_rows
from agentkeep.threads.models import Thread, ThreadMessage
from agentkeep.threads.schemas import ThreadRead

# Message numbers are 32-bit integers in the database; a cursor beyond that is not ours.
MAX_MESSAGE_SEQ = 2**31 - 1
# What the list shows, read as rows (db/rows.py).
_LISTED = columns_for(Thread, ThreadRead)


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
        return select(Thread).where(visible_to(viewer))

    async def start_turn(self, viewer: Viewer, thread_id: uuid.UUID, now: datetime) -> Thread | None:
        """Take the next turn number of a visible thread and move its activity to `now`.

        The UPDATE is the lock that serialises turns of one thread: the row lock on
        PostgreSQL, the database write lock on SQLite. The caller checks the thread's runs
        after it, within the same transaction.
        """
        await self.session.execute(
            update(Thread)
            .where(visible_to(viewer), Thread.id == thread_id)
            .values(turn_count=Thread.turn_count + 1, last_activity_at=now)
            .execution_options(synchronize_session=False)
        )
        statement = self._visible(viewer).where(Thread.id == thread_id)
        statement = statement.execution_options(populate_existing=True)
        return (await self.session.scalars(statement)).first()

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

    async def messages(
        self, thread_id: uuid.UUID, limit: int, cursor: str | None
    ) -> tuple[list[ThreadMessage], str | None]:
        """The thread's messages oldest first, keyed on their number in the thread."""
        statement = select(ThreadMessage).where(ThreadMessage.thread_id == thread_id)
        if cursor:
            after = decode_cursor(cursor).get("s")
            if not isinstance(after, int) or isinstance(after, bool) or not 0 < after <= MAX_MESSAGE_SEQ:
                raise InvalidCursor("The cursor is not one this API returned.")
            statement = statement.where(ThreadMessage.seq > after)
        statement = statement.order_by(ThreadMessage.seq).limit(limit + 1)
        rows = list((await self.session.scalars(statement)).all())
        if len(rows) <= limit:
            return rows, None
        rows = rows[:limit]
        return rows, encode_cursor({"s": rows[-1].seq})

    async def page(
        self,
        viewer: Viewer,
        limit: int,
        cursor: str | None,
        *,
        agent_id: uuid.UUID | None,
        created_by: uuid.UUID | None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Visible threads as ThreadRead rows, newest activity first, keyed on
        (last_activity_at, id)."""
        statement = select(*_LISTED).where(visible_to(viewer))
        if agent_id is not None:
            statement = statement.where(Thread.agent_id == agent_id)
        if created_by is not None:
            statement = statement.where(Thread.created_by_user_id == created_by)
        return await keyset_rows(
            self.session, statement, Thread.last_activity_at, Thread.id, limit=limit, cursor=cursor
        )


def visible_to(viewer: Viewer) -> ColumnElement[bool]:
    """The threads `viewer` may see (see Viewer)."""
    in_org = Thread.org_id == viewer.org_id
    if viewer.read_all:
        return in_org & true()
    if viewer.api_key_id is not None:
        return in_org & (Thread.created_by_api_key_id == viewer.api_key_id)
    return in_org & (Thread.created_by_user_id == viewer.user_id)


def visible_thread_ids(viewer: Viewer) -> Select[Any]:
    """Ids of the threads `viewer` may see, for filtering other tables (runs) by them."""
    return select(Thread.id).where(visible_to(viewer))
