"""Who is calling: the Principal dependency every protected route uses."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Literal

import structlog
from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from agentkeep.audit.service import AuditDep
from agentkeep.auth.errors import NotSuperuser
from agentkeep.auth.service import AuthService
from agentkeep.context import RequestContextDep
from agentkeep.db.session import SessionDep
from agentkeep.dependencies import SettingsDep
from agentkeep.ratelimit.dependency import enforce_principal_limit
from agentkeep.security.passwords import PasswordHasher
from agentkeep.security.tokens import TokenCodec
from agentkeep.users.models import User

# auto_error=False: a missing or malformed header gets our uniform 401, not FastAPI's.
bearer_scheme = OAuth2PasswordBearer(tokenUrl="/auth/login", auto_error=False)


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller. `org_id` and `kind` grow with organizations and API keys."""

    user_id: uuid.UUID
    user: User
    session_id: uuid.UUID
    jti: str
    org_id: uuid.UUID | None = None
    kind: Literal["user"] = "user"

    @property
    def is_superuser(self) -> bool:
        return self.user.is_superuser


def get_password_hasher(request: Request) -> PasswordHasher:
    hasher: PasswordHasher = request.app.state.password_hasher
    return hasher


def get_token_codec(request: Request) -> TokenCodec:
    codec: TokenCodec = request.app.state.token_codec
    return codec


def get_auth_service(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    hasher: Annotated[PasswordHasher, Depends(get_password_hasher)],
    tokens: Annotated[TokenCodec, Depends(get_token_codec)],
    audit: AuditDep,
) -> AuthService:
    state = request.app.state
    return AuthService(session, settings, hasher, tokens, audit, state.login_throttle, state.metrics)


AuthServiceDep = Annotated[AuthService, Depends(get_auth_service)]


async def get_current_principal(
    request: Request,
    service: AuthServiceDep,
    context: RequestContextDep,
    token: Annotated[str | None, Depends(bearer_scheme)],
) -> Principal:
    """Resolve the bearer token into a Principal (or the uniform 401), then count the
    request against the caller's RATE_LIMIT_API budget (429 when it is spent)."""
    found = await service.authenticate(token)
    structlog.contextvars.bind_contextvars(user_id=str(found.user.id))
    await enforce_principal_limit(request, context, f"user:{found.user.id}")
    return Principal(
        user_id=found.user.id,
        user=found.user,
        session_id=found.session_id,
        jti=found.jti,
        org_id=found.org_id,
    )


CurrentPrincipal = Annotated[Principal, Depends(get_current_principal)]


def get_superuser_principal(principal: CurrentPrincipal) -> Principal:
    if not principal.is_superuser:
        raise NotSuperuser("This action requires an administrator account.")
    return principal


SuperuserPrincipal = Annotated[Principal, Depends(get_superuser_principal)]
