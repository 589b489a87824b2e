"""Creating the first administrator from the command line (no HTTP, no registration switch)."""

from __future__ import annotations

from agentkeep.audit.actions import ActorType, AuditAction
from agentkeep.audit.service import record
from agentkeep.auth.repository import AuthRepository
from agentkeep.auth.service import create_user
from agentkeep.config import Settings
from agentkeep.context import RequestContext
from agentkeep.db.engine import create_engine, create_sessionmaker
from agentkeep.orgs.repository import OrgRepository
from agentkeep.orgs.service import add_personal_org
from agentkeep.security.passwords import PasswordHasher, default_concurrency
from agentkeep.users.models import User


async def create_admin(settings: Settings, username: str, email: str, password: str) -> User:
    """Create a superuser under the same policy as registration, audited; commit; return it.

    Raises WeakPassword or Conflict (agentkeep.errors.AppError) when refused.
    """
    engine = create_engine(settings)
    hasher = PasswordHasher(default_concurrency(settings.password_hash_concurrency))
    try:
        async with create_sessionmaker(engine)() as session:
            user = await create_user(
                AuthRepository(session), hasher, username, email, password, is_superuser=True
            )
            org = await add_personal_org(OrgRepository(session), user)
            await record(
                session,
                AuditAction.USER_REGISTERED,
                context=RequestContext.system(),
                actor_type=ActorType.SYSTEM,
                user_id=user.id,
                resource_type="user",
                resource_id=user.id,
                details={"username": user.username, "email": user.email, "is_superuser": True, "via": "cli"},
            )
            await record(
                session,
                AuditAction.ORG_CREATED,
                context=RequestContext.system(),
                actor_type=ActorType.SYSTEM,
                user_id=user.id,
                org_id=org.id,
                resource_type="organization",
                resource_id=org.id,
                details={"slug": org.slug, "is_personal": True, "via": "cli"},
            )
            await session.commit()
            return user
    finally:
        hasher.close()
        await engine.dispose()
