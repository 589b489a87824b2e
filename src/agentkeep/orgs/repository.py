"""Queries for organizations and memberships; member queries are scoped to one organization."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from agentkeep.orgs.models import Membership, Organization
from agentkeep.rbac.permissions import Role
from agentkeep.users.models import User


@dataclass(frozen=True, slots=True)
class MemberRow:
    membership: Membership
    user: User


def parse_org_ref(ref: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(ref)
    except ValueError:
        return None


class OrgRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, *objects: object) -> None:
        self.session.add_all(objects)
        await self.session.flush()

    async def membership_by_ref(self, user_id: uuid.UUID, ref: str) -> Membership | None:
        """The user's membership in the organization named by id or slug, if any."""
        org_id = parse_org_ref(ref)
        match = Organization.id == org_id if org_id is not None else Organization.slug == ref.strip().lower()
        statement = (
            select(Membership)
            .join(Organization, Organization.id == Membership.org_id)
            .where(Membership.user_id == user_id, match)
        )
        return (await self.session.scalars(statement)).first()

    async def personal_membership(self, user_id: uuid.UUID) -> Membership | None:
        statement = (
            select(Membership)
            .join(Organization, Organization.id == Membership.org_id)
            .where(Membership.user_id == user_id, Organization.is_personal.is_(True))
            .order_by(Organization.created_at)
        )
        return (await self.session.scalars(statement)).first()

    async def organizations_of(self, user_id: uuid.UUID) -> list[tuple[Organization, str]]:
        statement = (
            select(Organization, Membership.role)
            .join(Membership, Membership.org_id == Organization.id)
            .where(Membership.user_id == user_id)
            .order_by(Organization.created_at, Organization.id)
        )
        return [(row[0], row[1]) for row in await self.session.execute(statement)]

    async def get(self, org_id: uuid.UUID) -> Organization | None:
        return await self.session.get(Organization, org_id)

    async def lock(self, org_id: uuid.UUID) -> None:
        """Serialise membership changes of one organization (PostgreSQL row lock; SQLite
        serialises writers already), so two demotions cannot both see a second owner."""
        await self.session.execute(select(Organization.id).where(Organization.id == org_id).with_for_update())

    async def members(self, org_id: uuid.UUID) -> list[MemberRow]:
        statement = (
            select(Membership, User)
            .join(User, User.id == Membership.user_id)
            .where(Membership.org_id == org_id)
            .order_by(Membership.created_at, Membership.id)
        )
        return [MemberRow(membership=row[0], user=row[1]) for row in await self.session.execute(statement)]

    async def member(self, org_id: uuid.UUID, user_id: uuid.UUID) -> Membership | None:
        statement = select(Membership).where(Membership.org_id == org_id, Membership.user_id == user_id)
        return (await self.session.scalars(statement)).first()

    async def owner_count(self, org_id: uuid.UUID) -> int:
        statement = select(func.count()).where(
            Membership.org_id == org_id, Membership.role == Role.OWNER.value
        )
        return int((await self.session.execute(statement)).scalar_one())

    async def find_user(self, identifier: str) -> User | None:
        value = identifier.strip().lower()
        statement = select(User).where(or_(User.username == value, User.email == value))
        return (await self.session.scalars(statement)).first()

    async def slug_taken(self, slug: str) -> bool:
        statement = select(Organization.id).where(Organization.slug == slug)
        return (await self.session.execute(statement)).first() is not None

    async def delete(self, membership: Membership) -> None:
        await self.session.delete(membership)
        await self.session.flush()
