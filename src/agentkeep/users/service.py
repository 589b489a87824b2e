"""Instance administration: disable, enable, grant or revoke superuser. Never commits."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession

from agentkeep.audit.actions import AuditAction
from agentkeep.audit.service import AuditService
from agentkeep.errors import Conflict, NotFound
from agentkeep.users.models import User
from agentkeep.users.repository import UserRepository

RevokeSessions = Callable[[uuid.UUID, str], Awaitable[None]]


class UserNotFound(NotFound):
    title = "User not found"


class SelfLockout(Conflict):
    type_slug = "self-lockout"
    title = "Administrators cannot lock themselves out"


class UserAdminService:
    def __init__(self, session: AsyncSession, audit: AuditService, revoke_sessions: RevokeSessions) -> None:
        self.repository = UserRepository(session)
        self.audit = audit
        self.revoke_sessions = revoke_sessions

    async def page(self, limit: int, cursor: str | None) -> tuple[list[User], str | None]:
        return await self.repository.page(limit, cursor)

    async def set_active(self, actor_id: uuid.UUID, user_id: uuid.UUID, active: bool) -> User:
        """Disabling ends every session of the user at once (and stops their API keys)."""
        if not active and user_id == actor_id:
            raise SelfLockout("You cannot disable your own account.")
        user = await self._get(user_id)
        user.is_active = active
        if not active:
            await self.revoke_sessions(user.id, "user_disabled")
        await self.audit.record(
            AuditAction.USER_ENABLED if active else AuditAction.USER_DISABLED,
            user_id=actor_id,
            resource_type="user",
            resource_id=user.id,
            details={"username": user.username},
        )
        return user

    async def set_superuser(self, actor_id: uuid.UUID, user_id: uuid.UUID, superuser: bool) -> User:
        if not superuser and user_id == actor_id:
            raise SelfLockout("You cannot revoke your own administrator rights.")
        user = await self._get(user_id)
        user.is_superuser = superuser
        await self.audit.record(
            AuditAction.SUPERUSER_GRANTED if superuser else AuditAction.SUPERUSER_REVOKED,
            user_id=actor_id,
            resource_type="user",
            resource_id=user.id,
            details={"username": user.username},
        )
        return user

    async def _get(self, user_id: uuid.UUID) -> User:
        user = await self.repository.get(user_id)
        if user is None:
            raise UserNotFound("No such user.")
        return user
