"""HTTP endpoints under /api/orgs: parse, call the service, shape the answer."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, status

from agentkeep.audit.service import AuditDep
from agentkeep.auth.dependencies import Principal
from agentkeep.db.session import SessionDep
from agentkeep.dependencies import SettingsDep
from agentkeep.orgs.repository import MemberRow
from agentkeep.orgs.schemas import (
    MemberAdd,
    MemberList,
    MemberRead,
    MemberUpdate,
    MyOrgList,
    MyOrgRead,
    OrgBudgetRead,
    OrgBudgetUpdate,
    OrgCreate,
    OrgRead,
)
from agentkeep.orgs.service import OrgService
from agentkeep.rbac.dependencies import Authenticated, require
from agentkeep.rbac.permissions import Permission, Role
from agentkeep.runs.budget import effective_budget

router = APIRouter(prefix="/api/orgs", tags=["organizations"])

MembersRead = Annotated[Principal, Depends(require(Permission.MEMBERS_READ))]
MembersManage = Annotated[Principal, Depends(require(Permission.MEMBERS_MANAGE))]
OrgManager = Annotated[Principal, Depends(require(Permission.ORG_MANAGE))]


async def get_org_service(session: SessionDep, audit: AuditDep) -> OrgService:
    return OrgService(session, audit)


OrgServiceDep = Annotated[OrgService, Depends(get_org_service)]
LAST_OWNER: dict[int | str, dict[str, Any]] = {
    409: {"description": "The organization would lose its last owner."}
}


def _member(row: MemberRow) -> MemberRead:
    return MemberRead(
        user_id=row.user.id,
        username=row.user.username,
        email=row.user.email,
        role=Role(row.membership.role),
        created_at=row.membership.created_at,
    )


@router.get("", response_model=MyOrgList)
async def list_my_orgs(principal: Authenticated, service: OrgServiceDep) -> MyOrgList:
    """The organizations the caller belongs to, each with the caller's role."""
    orgs = await service.list_mine(principal.user_id)
    return MyOrgList(
        items=[MyOrgRead(**OrgRead.model_validate(org).model_dump(), role=role) for org, role in orgs]
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=MyOrgRead,
    responses={409: {"description": "The slug is taken."}},
)
async def create_org(body: OrgCreate, principal: Authenticated, service: OrgServiceDep) -> MyOrgRead:
    """Create a team organization; the caller becomes its owner (switch to it to act there)."""
    org = await service.create_team(principal.grantor, body.name, body.slug)
    return MyOrgRead(**OrgRead.model_validate(org).model_dump(), role=Role.OWNER)


@router.get("/{org_id}", response_model=OrgRead)
async def get_org(org_id: uuid.UUID, principal: MembersRead, service: OrgServiceDep) -> OrgRead:
    """The current organization (any other id answers 404)."""
    return OrgRead.model_validate(await service.current(principal.grantor, org_id))


@router.put("/{org_id}/budget", response_model=OrgBudgetRead)
async def set_org_budget(
    org_id: uuid.UUID,
    body: OrgBudgetUpdate,
    principal: OrgManager,
    service: OrgServiceDep,
    settings: SettingsDep,
) -> OrgBudgetRead:
    """Set the organization's monthly token budget (null: the deployment default applies).
    New runs are refused with 429 once the month's usage reaches it."""
    org = await service.set_budget(principal.grantor, org_id, body.monthly_token_budget)
    own = org.monthly_token_budget
    return OrgBudgetRead(
        org_id=org.id,
        monthly_token_budget=own,
        effective_budget=effective_budget(own, settings.org_monthly_token_budget),
    )


@router.get("/{org_id}/members", response_model=MemberList)
async def list_members(org_id: uuid.UUID, principal: MembersRead, service: OrgServiceDep) -> MemberList:
    """The members of the current organization with their roles."""
    rows = await service.members(principal.grantor, org_id)
    return MemberList(items=[_member(row) for row in rows])


@router.post(
    "/{org_id}/members",
    status_code=status.HTTP_201_CREATED,
    response_model=MemberRead,
    responses={409: {"description": "The user is already a member."}},
)
async def add_member(
    org_id: uuid.UUID, body: MemberAdd, principal: MembersManage, service: OrgServiceDep
) -> MemberRead:
    """Add an existing user (by username or email) with a role whose permissions you hold."""
    return _member(await service.add_member(principal.grantor, org_id, body.user, body.role))


@router.patch("/{org_id}/members/{user_id}", response_model=MemberRead, responses=LAST_OWNER)
async def change_member_role(
    org_id: uuid.UUID,
    user_id: uuid.UUID,
    body: MemberUpdate,
    principal: MembersManage,
    service: OrgServiceDep,
) -> MemberRead:
    """Change a member's role (you must hold both roles' permissions); the last owner stays."""
    return _member(await service.change_role(principal.grantor, org_id, user_id, body.role))


@router.delete("/{org_id}/members/{user_id}", status_code=status.HTTP_204_NO_CONTENT, responses=LAST_OWNER)
async def remove_member(
    org_id: uuid.UUID, user_id: uuid.UUID, principal: MembersManage, service: OrgServiceDep
) -> None:
    """Remove a member whose role's permissions you hold; their tokens lose them at once."""
    await service.remove_member(principal.grantor, org_id, user_id)
