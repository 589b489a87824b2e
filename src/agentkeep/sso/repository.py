"""Queries for SSO identities and pending logins."""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from agentkeep.orgs.models import Organization
from agentkeep.sso.models import OidcLoginState, UserIdentity
from agentkeep.users.models import User


def digest(value: str) -> str:
    """What is stored of a state or browser binding: its SHA-256, never the value."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


class SsoRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, *objects: object) -> None:
        self.session.add_all(objects)
        await self.session.flush()

    async def purge_expired_states(self, now: datetime) -> None:
        await self.session.execute(
            delete(OidcLoginState)
            .where(OidcLoginState.expires_at < now)
            .execution_options(synchronize_session=False)
        )

    async def take_state(self, state: str) -> OidcLoginState | None:
        """Delete the pending login with this state and return it: whoever deletes it uses it,
        so a state serves once even when two callbacks race."""
        found = (
            await self.session.scalars(
                select(OidcLoginState).where(OidcLoginState.state_hash == digest(state))
            )
        ).first()
        if found is None:
            return None
        result = await self.session.execute(
            delete(OidcLoginState)
            .where(OidcLoginState.id == found.id)
            .execution_options(synchronize_session=False)
        )
        return found if getattr(result, "rowcount", 0) == 1 else None

    async def identity(self, issuer: str, subject: str) -> UserIdentity | None:
        statement = select(UserIdentity).where(UserIdentity.issuer == issuer, UserIdentity.subject == subject)
        return (await self.session.scalars(statement)).first()

    async def user(self, user_id: object) -> User | None:
        return await self.session.get(User, user_id, populate_existing=True)

    async def user_by_email(self, email: str) -> User | None:
        return (await self.session.scalars(select(User).where(User.email == email))).first()

    async def username_taken(self, username: str) -> bool:
        statement = select(User.id).where(User.username == username)
        return (await self.session.execute(statement)).first() is not None

    async def orgs_by_slug(self, slugs: set[str]) -> dict[str, Organization]:
        if not slugs:
            return {}
        statement = select(Organization).where(Organization.slug.in_(slugs))
        return {org.slug: org for org in await self.session.scalars(statement)}
