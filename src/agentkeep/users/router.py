"""HTTP endpoints under /api/users: instance administration, for superusers only."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from agentkeep.audit.service import AuditDep
from agentkeep.auth.dependencies import AuthServiceDep, SuperuserPrincipal
from agentkeep.db.session import SessionDep
from agentkeep.users.schemas import SuperuserUpdate, UserListQuery, UserPage, UserRead
from agentkeep.users.service import UserAdminService

router = APIRouter(prefix="/api/users", tags=["users"])


async def get_user_admin_service(
    session: SessionDep, audit: AuditDep, auth: AuthServiceDep
) -> UserAdminService:
    return UserAdminService(session, audit, auth.revoke_all_sessions)


UserAdminDep = Annotated[UserAdminService, Depends(get_user_admin_service)]
SELF_LOCKOUT: dict[int | str, dict[str, Any]] = {
    409: {"description": "An administrator cannot lock themself out."}
}


@router.get("", response_model=UserPage)
async def list_users(
    _admin: SuperuserPrincipal, query: Annotated[UserListQuery, Query()], service: UserAdminDep
) -> UserPage:
    """Every account of the instance, oldest first, cursor-paginated."""
    users, next_cursor = await service.page(query.limit, query.cursor)
    return UserPage(items=[UserRead.model_validate(user) for user in users], next_cursor=next_cursor)


@router.post("/{user_id}/disable", response_model=UserRead, responses=SELF_LOCKOUT)
async def disable_user(user_id: uuid.UUID, admin: SuperuserPrincipal, service: UserAdminDep) -> UserRead:
    """Disable an account: it cannot log in, and every session and API key of it stops now."""
    return UserRead.model_validate(await service.set_active(admin.user_id, user_id, active=False))


@router.post("/{user_id}/enable", response_model=UserRead)
async def enable_user(user_id: uuid.UUID, admin: SuperuserPrincipal, service: UserAdminDep) -> UserRead:
    """Enable a disabled account again (it logs in anew; old sessions stay ended)."""
    return UserRead.model_validate(await service.set_active(admin.user_id, user_id, active=True))


@router.post("/{user_id}/superuser", response_model=UserRead, responses=SELF_LOCKOUT)
async def set_superuser(
    user_id: uuid.UUID, body: SuperuserUpdate, admin: SuperuserPrincipal, service: UserAdminDep
) -> UserRead:
    """Grant or revoke instance administrator rights (`{"is_superuser": true|false}`)."""
    return UserRead.model_validate(await service.set_superuser(admin.user_id, user_id, body.is_superuser))
