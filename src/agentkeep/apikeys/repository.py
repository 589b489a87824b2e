"""API key queries: listing and revoking are scoped to one organization; authentication
looks a key up by its hash together with its creator and the creator's current role.

A key creating a child and a revocation of that key must not interleave, or the child would
outlive its parent. Both begin with a write to the parent's row: the creating request marks
the parent used only while it is not revoked (`use_if_live`), and the revocation writes each
generation's `revoked_at` before reading the next one. The first write takes the row lock on
PostgreSQL and the database write lock on SQLite (whose driver opens a transaction only at
the first write), so whichever comes second sees the other's committed result."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, and_, or_, select, update
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

    async def lock_in_org(self, org_id: uuid.UUID, key_id: uuid.UUID) -> ApiKey | None:
        """The key, its row locked until the transaction ends (PostgreSQL)."""
        statement = select(ApiKey).where(ApiKey.org_id == org_id, ApiKey.id == key_id).with_for_update()
        return (await self.session.scalars(statement)).first()

    async def children(self, org_id: uuid.UUID, parent_ids: list[uuid.UUID]) -> list[ApiKey]:
        """The keys created by any of `parent_ids`, oldest first."""
        statement = (
            select(ApiKey)
            .where(ApiKey.org_id == org_id, ApiKey.parent_key_id.in_(parent_ids))
            .order_by(ApiKey.created_at, ApiKey.id)
        )
        return list((await self.session.scalars(statement)).all())

    async def use_if_live(self, org_id: uuid.UUID, key_id: uuid.UUID, now: datetime) -> bool:
        """Mark the key used now unless it is revoked; False if it is (or is gone)."""
        result = await self.session.execute(
            update(ApiKey)
            .where(ApiKey.org_id == org_id, ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
            .values(last_used_at=now)
            .execution_options(synchronize_session=False)
        )
        return int(cast(CursorResult[Any], result).rowcount) == 1

    async def flush(self) -> None:
        await self.session.flush()

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
