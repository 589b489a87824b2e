"""API key queries: listing and revoking are scoped to one organization; authentication
looks a key up by its hash together with its creator and the creator's current role."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from agentkeep.apikeys.models import ApiKey
from agentkeep.orgs.models import Membership
from agentkeep.pagination import keyset_page
from agentkeep.users.models import User


@dataclass(frozen=True, slots=True)
class KeyState:
    key: ApiKey
    creator: User
    # The creator's role in the key's organization now; None once removed from it.
    creator_role: str | None


class ApiKeyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, key: ApiKey) -> None:
        self.session.add(key)
        await self.session.flush()

    async def page_in_org(
        self, org_id: uuid.UUID, limit: int, cursor: str | None
    ) -> tuple[list[ApiKey], str | None]:
        """Newest first, keyed on (created_at, id); the cursor resumes after its last row."""
        statement = select(ApiKey).where(ApiKey.org_id == org_id)
        return await keyset_page(
            self.session, statement, ApiKey.created_at, ApiKey.id, limit=limit, cursor=cursor
        )

    async def get_in_org(self, org_id: uuid.UUID, key_id: uuid.UUID) -> ApiKey | None:
        statement = select(ApiKey).where(ApiKey.org_id == org_id, ApiKey.id == key_id)
        return (await self.session.scalars(statement)).first()

    async def state_by_hash(self, key_hash: str) -> KeyState | None:
        statement = (
            select(ApiKey, User, Membership.role)
            .join(User, User.id == ApiKey.created_by)
            .outerjoin(Membership, and_(Membership.org_id == ApiKey.org_id, Membership.user_id == User.id))
            .where(ApiKey.key_hash == key_hash)
        )
        row = (await self.session.execute(statement)).first()
        return KeyState(key=row[0], creator=row[1], creator_role=row[2]) if row else None

    async def touch(self, key_id: uuid.UUID, now: datetime, not_since: datetime) -> None:
        """Set last_used_at unless it was set after `not_since` (one write a minute at most)."""
        await self.session.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id, or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < not_since))
            .values(last_used_at=now)
            .execution_options(synchronize_session=False)
        )
