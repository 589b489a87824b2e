"""Organization and membership rules. No HTTP objects, never a commit.

Every method takes the caller's current organization: an id other than it answers 404,
so another tenant's organization is indistinguishable from one that does not exist.
"""

from __future__ import annotations

import uuid

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from agentkeep.audit.actions import AuditAction
from agentkeep.audit.service import AuditService
from agentkeep.errors import Conflict, NotFound
from agentkeep.orgs.models import Membership, Organization
from agentkeep.orgs.repository import MemberRow, OrgRepository
from agentkeep.rbac.grants import GrantGuard, Grantor
from agentkeep.rbac.permissions import Role
from agentkeep.users.models import User


class OrgNotFound(NotFound):
    title = "Organization not found"


class MemberNotFound(NotFound):
    title = "Member not found"


class LastOwner(Conflict):
    type_slug = "last-owner"
    title = "The last owner cannot be removed or demoted"


async def add_personal_org(repository: OrgRepository, user: User) -> Organization:
    """The organization every account gets at creation, with the user as its owner."""
    org = Organization(id=uuid.uuid4(), name=user.username, slug=f"~{user.username}", is_personal=True)
    await repository.add(org)
    await repository.add(Membership(org_id=org.id, user_id=user.id, role=Role.OWNER.value))
    return org


class OrgService:
    def __init__(self, session: AsyncSession, audit: AuditService) -> None:
        self.repository = OrgRepository(session)
        self.audit = audit
        self.grants = GrantGuard(audit)

    async def list_mine(self, user_id: uuid.UUID) -> list[tuple[Organization, Role]]:
        return [(org, Role(role)) for org, role in await self.repository.organizations_of(user_id)]

    async def create_team(self, actor: Grantor, name: str, slug: str) -> Organization:
        if await self.repository.slug_taken(slug):
            raise Conflict("This organization slug is taken.", extra={"field": "slug"})
        org = Organization(id=uuid.uuid4(), name=name, slug=slug, is_personal=False)
        try:
            await self.repository.add(org)
            await self.repository.add(Membership(org_id=org.id, user_id=actor.user_id, role=Role.OWNER.value))
        except IntegrityError:
            raise Conflict("This organization slug is taken.", extra={"field": "slug"}) from None
        await self.audit.record(
            AuditAction.ORG_CREATED,
            user_id=actor.user_id,
            actor_type=actor.actor_type,
            org_id=org.id,
            resource_type="organization",
            resource_id=org.id,
            details={"slug": slug, "is_personal": False},
        )
        return org

    async def current(self, actor: Grantor, org_id: uuid.UUID) -> Organization:
        org = await self.repository.get(org_id) if org_id == actor.org_id else None
        if org is None:
            raise OrgNotFound("No such organization.")
        return org

    async def set_budget(self, actor: Grantor, org_id: uuid.UUID, budget: int | None) -> Organization:
        """Set (or with None, clear) the organization's own monthly token budget."""
        org = await self.current(actor, org_id)
        previous = org.monthly_token_budget
        org.monthly_token_budget = budget
        await self.repository.session.flush()
        if previous != budget:
            await self.audit.record(
                AuditAction.BUDGET_CHANGED,
                user_id=actor.user_id,
                actor_type=actor.actor_type,
                org_id=org.id,
                resource_type="organization",
                resource_id=org.id,
                details={"from": previous, "to": budget},
            )
        return org

    async def members(self, actor: Grantor, org_id: uuid.UUID) -> list[MemberRow]:
        org = await self.current(actor, org_id)
        return await self.repository.members(org.id)

    async def add_member(self, actor: Grantor, org_id: uuid.UUID, identifier: str, role: Role) -> MemberRow:
        org = await self.current(actor, org_id)
        # Checked before the lookup: a refused grant reveals nothing about the user.
        self.grants.grant_role(actor, role, resource_id=None)
        user = await self.repository.find_user(identifier)
        if user is None:
            raise NotFound("No user with this username or email.")
        if await self.repository.member(org.id, user.id) is not None:
            raise Conflict("This user is already a member.")
        membership = Membership(org_id=org.id, user_id=user.id, role=role.value)
        try:
            await self.repository.add(membership)
        except IntegrityError:
            raise Conflict("This user is already a member.") from None
        await self.audit.record(
            AuditAction.MEMBER_ADDED,
            user_id=actor.user_id,
            actor_type=actor.actor_type,
            org_id=org.id,
            resource_type="membership",
            resource_id=user.id,
            details={"member": user.username, "role": role.value},
        )
        return MemberRow(membership=membership, user=user)

    async def change_role(
        self, actor: Grantor, org_id: uuid.UUID, user_id: uuid.UUID, role: Role
    ) -> MemberRow:
        org = await self.current(actor, org_id)
        await self.repository.lock(org.id)
        membership = await self._member(org.id, user_id)
        previous = Role(membership.role)
        self.grants.act_on_member(actor, previous, resource_id=user_id)
        self.grants.grant_role(actor, role, resource_id=user_id)
        if previous is Role.OWNER and role is not Role.OWNER:
            await self._check_not_last_owner(org.id)
        membership.role = role.value
        await self.audit.record(
            AuditAction.ROLE_CHANGED,
            user_id=actor.user_id,
            actor_type=actor.actor_type,
            org_id=org.id,
            resource_type="membership",
            resource_id=user_id,
            details={"from": previous.value, "to": role.value},
        )
        rows = [row for row in await self.repository.members(org.id) if row.user.id == user_id]
        return rows[0]

    async def remove_member(self, actor: Grantor, org_id: uuid.UUID, user_id: uuid.UUID) -> None:
        org = await self.current(actor, org_id)
        await self.repository.lock(org.id)
        membership = await self._member(org.id, user_id)
        self.grants.act_on_member(actor, Role(membership.role), resource_id=user_id)
        if Role(membership.role) is Role.OWNER:
            await self._check_not_last_owner(org.id)
        role = membership.role
        await self.repository.delete(membership)
        await self.audit.record(
            AuditAction.MEMBER_REMOVED,
            user_id=actor.user_id,
            actor_type=actor.actor_type,
            org_id=org.id,
            resource_type="membership",
            resource_id=user_id,
            details={"role": role},
        )

    async def _member(self, org_id: uuid.UUID, user_id: uuid.UUID) -> Membership:
        membership = await self.repository.member(org_id, user_id)
        if membership is None:
            raise MemberNotFound("No such member in this organization.")
        return membership

    async def _check_not_last_owner(self, org_id: uuid.UUID) -> None:
        if await self.repository.owner_count(org_id) <= 1:
            raise LastOwner("An organization keeps at least one owner: add another owner first.")
