"""Members and roles: list, invite (add an existing user), change role, remove. Each action is
OrgService's, as on /api/orgs/{org_id}/members: a role is granted only by someone holding
all its permissions, the last owner stays, and every change is audited."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Form, Request
from starlette.responses import Response

from agentkeep.auth.dependencies import Principal
from agentkeep.console.access import page_permission
from agentkeep.console.pages.org import org_page
from agentkeep.console.route import console_router
from agentkeep.console.templating import redirect
from agentkeep.orgs.router import OrgServiceDep
from agentkeep.orgs.schemas import MemberAdd, MemberUpdate
from agentkeep.rbac.permissions import Permission, Role, permissions_of

router = console_router()

MembersRead = Annotated[Principal, Depends(page_permission(Permission.MEMBERS_READ))]
MembersManage = Annotated[Principal, Depends(page_permission(Permission.MEMBERS_MANAGE))]


def _org_id(principal: Principal) -> uuid.UUID:
    assert principal.org_id is not None  # page_permission passed: a member there
    return principal.org_id


def grantable_roles(principal: Principal) -> list[str]:
    """The roles the caller may hand out (the service checks again): those whose every
    permission the caller holds."""
    return [role.value for role in Role if all(principal.can(p) for p in permissions_of(role))]


@router.get("/org/members")
async def members_page(request: Request, principal: MembersRead, orgs: OrgServiceDep) -> Response:
    rows = await orgs.members(principal.grantor, _org_id(principal))
    manage = principal.can(Permission.MEMBERS_MANAGE)
    return org_page(
        request,
        principal,
        "org/members.html",
        {
            "members": rows,
            "manage": manage,
            "roles": grantable_roles(principal) if manage else [],
        },
    )


@router.post("/org/members")
async def add_member(
    request: Request,
    principal: MembersManage,
    orgs: OrgServiceDep,
    user: Annotated[str, Form()],
    role: Annotated[str, Form()],
) -> Response:
    body = MemberAdd.model_validate({"user": user.strip(), "role": role})
    await orgs.add_member(principal.grantor, _org_id(principal), body.user, body.role)
    return redirect(request, "/org/members?done=member-added")


@router.post("/org/members/{user_id}/role")
async def change_role(
    request: Request,
    user_id: uuid.UUID,
    principal: MembersManage,
    orgs: OrgServiceDep,
    role: Annotated[str, Form()],
) -> Response:
    body = MemberUpdate.model_validate({"role": role})
    await orgs.change_role(principal.grantor, _org_id(principal), user_id, body.role)
    return redirect(request, "/org/members?done=role-changed")


@router.post("/org/members/{user_id}/remove")
async def remove_member(
    request: Request, user_id: uuid.UUID, principal: MembersManage, orgs: OrgServiceDep
) -> Response:
    await orgs.remove_member(principal.grantor, _org_id(principal), user_id)
    return redirect(request, "/org/members?done=member-removed")
