"""Creating the first administrator from the command line (no HTTP, no registration switch)."""

from __future__ import annotations

from agentkeep.auth.service import AuthService
from agentkeep.config import Settings
from agentkeep.db.engine import create_engine, create_sessionmaker
from agentkeep.security.passwords import PasswordHasher, default_concurrency
from agentkeep.security.tokens import TokenCodec
from agentkeep.users.models import User


async def create_admin(settings: Settings, username: str, email: str, password: str) -> User:
    """Create a superuser under the same policy as registration; commit; return it.

    Raises WeakPassword or Conflict (agentkeep.errors.AppError) when refused.
    """
    engine = create_engine(settings)
    hasher = PasswordHasher(default_concurrency(settings.password_hash_concurrency))
    try:
        async with create_sessionmaker(engine)() as session:
            service = AuthService(session, settings, hasher, TokenCodec.from_settings(settings))
            user = await service.create_user(username, email, password, is_superuser=True)
            await session.commit()
            return user
    finally:
        hasher.close()
        await engine.dispose()
