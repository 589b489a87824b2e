"""Instance-wide user queries (superusers only: these are not organization-scoped)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from agentkeep.pagination import InvalidCursor, decode_cursor, encode_cursor
from agentkeep.users.models import User


class UserRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, user_id: uuid.UUID) -> User | None:
        return await self.session.get(User, user_id)

    async def page(self, limit: int, cursor: str | None) -> tuple[list[User], str | None]:
        """Oldest first, keyed on (created_at, id)."""
        statement = select(User)
        if cursor:
            position = decode_cursor(cursor)
            try:
                created = datetime.fromisoformat(str(position["t"]))
                after = uuid.UUID(str(position["id"]))
            except (KeyError, ValueError) as exc:
                raise InvalidCursor("The cursor is not one this API returned.") from exc
            if created.tzinfo is None:
                raise InvalidCursor("The cursor is not one this API returned.")
            statement = statement.where(
                or_(User.created_at > created, and_(User.created_at == created, User.id > after))
            )
        statement = statement.order_by(User.created_at, User.id).limit(limit + 1)
        rows = list((await self.session.scalars(statement)).all())
        if len(rows) <= limit:
            return rows, None
        rows = rows[:limit]
        return rows, encode_cursor({"t": rows[-1].created_at.isoformat(), "id": str(rows[-1].id)})
