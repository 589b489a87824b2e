"""Who is calling: the Principal dependency every protected route uses."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Literal

import structlog
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession

from agentkeep.apikeys.secret import ApiKeyHasher, looks_like_api_key
from agentkeep.apikeys.service import ApiKeyService
from agentkeep.audit.service import AuditDep
from agentkeep.auth.errors import NotSuperuser
from agentkeep.auth.service import Authenticated, AuthService, authenticate_access_token
from agentkeep.context import request_context
from agentkeep.db.session import SessionDep
from agentkeep.dependencies import SettingsDep
from agentkeep.ratelimit.dependency import enforce_principal_limit
from agentkeep.rbac.grants import Grantor, KeyLimits
from agentkeep.rbac.permissions import Permission, Role, permissions_of
from agentkeep.security.passwords import PasswordHasher
from agentkeep.security.tokens import TokenCodec
from agentkeep.users.models import User

# auto_error=False: a missing or malformed header gets our uniform 401, not FastAPI's.
bearer_scheme = OAuth2PasswordBearer(tokenUrl="/auth/login", auto_error=False)
api_key_scheme = APIKeyHeader(name="X-API-Key", auto_error=False)


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller, acting in one organization with the role its membership
    holds now (None: no longer a member there; every permission check then fails)."""

    user_id: uuid.UUID
    user: User
    session_id: uuid.UUID | None
    jti: str | None
    org_id: uuid.UUID | None = None
    role: Role | None = None
    kind: Literal["user", "api_key"] = "user"
    # API keys only: the key and the permissions it was granted (a subset of its creator's).
    api_key_id: uuid.UUID | None = None
    scopes: frozenset[Permission] | None = None
    key_limits: KeyLimits | None = None

    @property
    def is_superuser(self) -> bool:
        return self.kind == "user" and self.user.is_superuser

    @property
    def permissions(self) -> frozenset[Permission]:
        """Role permissions, intersected with the key's scopes for an API key. For a key,
        `role` is its creator's role read on this request, so demoting the creator narrows
        the key at once."""
        granted = permissions_of(self.role) if self.role is not None else frozenset()
        return granted & self.scopes if self.scopes is not None else granted

    def can(self, permission: Permission) -> bool:
        return permission in self.permissions

    @property
    def grantor(self) -> Grantor:
        """The caller as the grant rule sees it (rbac.grants): what it effectively holds."""
        return Grantor(
            user_id=self.user_id,
            org_id=self.org_id,
            permissions=self.permissions,
            api_key_id=self.api_key_id,
            key_limits=self.key_limits,
        )

    @property
    def limit_key(self) -> str:
        """Whose RATE_LIMIT_API budget a request spends: the key's own, or the user's."""
        return f"apikey:{self.api_key_id}" if self.api_key_id is not None else f"user:{self.user_id}"


async def get_password_hasher(request: Request) -> PasswordHasher:
    hasher: PasswordHasher = request.app.state.password_hasher
    return hasher


def token_codec_of(request: Request) -> TokenCodec:
    codec: TokenCodec = request.app.state.token_codec
    return codec


async def get_token_codec(request: Request) -> TokenCodec:
    return token_codec_of(request)


async def get_auth_service(
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


def api_key_hasher_of(request: Request) -> ApiKeyHasher:
    hasher: ApiKeyHasher = request.app.state.api_key_hasher
    return hasher


async def get_api_key_hasher(request: Request) -> ApiKeyHasher:
    return api_key_hasher_of(request)


async def _api_key_principal(request: Request, session: AsyncSession, raw: str, ip: str | None) -> Principal:
    service = ApiKeyService(session, api_key_hasher_of(request))
    found = await service.authenticate(raw, ip, request.app.state.key_cache)
    structlog.contextvars.bind_contextvars(user_id=str(found.creator.id), api_key_id=str(found.key_id))
    return Principal(
        user_id=found.creator.id,
        user=found.creator,
        session_id=None,
        jti=None,
        org_id=found.org_id,
        role=found.creator_role,
        kind="api_key",
        api_key_id=found.key_id,
        scopes=found.scopes,
        key_limits=found.limits,
    )


# Where a request keeps its resolved caller: one resolution (and one rate-limit hit) per
# request, however many of its dependencies ask.
_PRINCIPAL_SCOPE_KEY = "agentkeep.principal"


async def resolve_principal(request: Request, session: AsyncSession) -> Principal:
    """Resolve the caller (access token, or API key in `X-API-Key` or `Authorization:
    Bearer ak_...`) into a Principal or the uniform 401, then count the request against
    the caller's RATE_LIMIT_API budget (per user, or per API key; 429 when it is spent).

    Plain code for the dependencies that need the caller (`get_current_principal`,
    `require(...)`): the two security schemes are called here, not declared, because each
    dependency FastAPI resolves costs more than the work itself (the OpenAPI document's
    security comes from the access markers, agentkeep.openapi). The first resolution is
    kept for the request, so a route whose dependencies ask twice still authenticates and
    counts it once."""
    known: Principal | None = request.scope.get(_PRINCIPAL_SCOPE_KEY)
    if known is not None:
        return known
    token = await bearer_scheme(request)
    api_key = await api_key_scheme(request)
    raw_key = api_key or (token if token and looks_like_api_key(token) else None)
    if raw_key is not None:
        principal = await _api_key_principal(request, session, raw_key, request_context(request).ip_address)
    else:
        found = await authenticate_access_token(
            session, token_codec_of(request), token, request.app.state.session_cache
        )
        principal = session_principal(found)
    await enforce_principal_limit(request, principal.limit_key)
    request.scope[_PRINCIPAL_SCOPE_KEY] = principal
    return principal


async def get_current_principal(request: Request, session: SessionDep) -> Principal:
    """The caller (`resolve_principal`). Every authenticated request runs this or
    `require(...)`, so it declares only what it cannot read from the app state."""
    return await resolve_principal(request, session)


def session_principal(found: Authenticated) -> Principal:
    """The caller of a login session's access token (API bearer or console cookie), named in
    the request's log lines."""
    structlog.contextvars.bind_contextvars(user_id=str(found.user.id))
    return Principal(
        user_id=found.user.id,
        user=found.user,
        session_id=found.session_id,
        jti=found.jti,
        org_id=found.org_id,
        role=found.role,
    )


CurrentPrincipal = Annotated[Principal, Depends(get_current_principal)]


async def get_superuser_principal(principal: CurrentPrincipal) -> Principal:
    if not principal.is_superuser:
        raise NotSuperuser("This action requires an administrator account.")
    return principal


SuperuserPrincipal = Annotated[Principal, Depends(get_superuser_principal)]
