"""Instance-wide user queries (superusers only: these are not organization-scoped)."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from agentkeep.pagination import keyset_page
from agentkeep.users.models import User


class UserRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, user_id: uuid.UUID) -> User | None:
        return await self.session.get(User, user_id)

    async def page(self, limit: int, cursor: str | None) -> tuple[list[User], str | None]:
        """Oldest first, keyed on (created_at, id)."""
        return await keyset_page(
            self.session,
            select(User),
            User.created_at,
            User.id,
            limit=limit,
            cursor=cursor,
            newest_first=False,
        )
