"""API key rules: create (scopes within what the creator effectively holds, rbac.grants),
list, revoke, and the two-gate authentication of every request that presents a key. Never
commits."""

from __future__ import annotations

import ipaddress
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from agentkeep.apikeys.models import ApiKey
from agentkeep.apikeys.repository import ApiKeyRepository
from agentkeep.apikeys.secret import ApiKeyHasher, display_prefix, is_well_formed, new_api_key
from agentkeep.audit.actions import AuditAction
from agentkeep.audit.service import AuditService
from agentkeep.auth.errors import InvalidAccessToken
from agentkeep.errors import InvalidInput, NotFound
from agentkeep.rbac.grants import GrantGuard, Grantor, KeyLimits
from agentkeep.rbac.permissions import Permission, Role
from agentkeep.users.models import User

# last_used_at is written at most once per key in this interval.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class ApiKeyNotFound(NotFound):
    title = "API key not found"


@dataclass(frozen=True, slots=True)
class AuthenticatedKey:
    key_id: uuid.UUID
    org_id: uuid.UUID
    creator: User
    creator_role: Role | None
    scopes: frozenset[Permission]
    limits: KeyLimits


def _ip_allowed(ip: str | None, cidrs: list[str] | None) -> bool:
    if not cidrs:
        return True
    if ip is None:
        return False
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


class ApiKeyService:
    def __init__(
        self, session: AsyncSession, hasher: ApiKeyHasher, audit: AuditService | None = None
    ) -> None:
        self.repository = ApiKeyRepository(session)
        self.hasher = hasher
        self.audit = audit

    async def create(
        self,
        creator: Grantor,
        name: str,
        scopes: list[Permission],
        expires_at: datetime | None,
        allowed_cidrs: list[str] | None,
    ) -> tuple[ApiKey, str]:
        assert self.audit is not None
        assert creator.org_id is not None
        grants = GrantGuard(self.audit)
        grants.grant_scopes(creator, scopes)
        now = datetime.now(UTC)
        if expires_at is not None:
            expires_at = expires_at if expires_at.tzinfo else expires_at.replace(tzinfo=UTC)
            if expires_at <= now:
                raise InvalidInput("expires_at must be in the future.")
        expires_at, allowed_cidrs = grants.bound_key_limits(creator, expires_at, allowed_cidrs)
        secret = new_api_key()
        key = ApiKey(
            id=uuid.uuid4(),
            org_id=creator.org_id,
            created_by=creator.user_id,
            name=name,
            prefix=display_prefix(secret),
            key_hash=self.hasher.hash(secret),
            scopes=sorted({scope.value for scope in scopes}),
            allowed_cidrs=sorted(set(allowed_cidrs)) if allowed_cidrs else None,
            created_at=now,
            expires_at=expires_at,
        )
        await self.repository.add(key)
        await self._record(AuditAction.API_KEY_CREATED, creator, key)
        return key, secret

    async def page(
        self, org_id: uuid.UUID, limit: int, cursor: str | None
    ) -> tuple[list[ApiKey], str | None]:
        return await self.repository.page_in_org(org_id, limit, cursor)

    async def revoke(self, actor: Grantor, key_id: uuid.UUID) -> None:
        assert actor.org_id is not None
        key = await self.repository.get_in_org(actor.org_id, key_id)
        if key is None:
            raise ApiKeyNotFound("No such API key.")
        if key.revoked_at is not None:
            return
        key.revoked_at = datetime.now(UTC)
        await self._record(AuditAction.API_KEY_REVOKED, actor, key)

    async def _record(self, action: AuditAction, actor: Grantor, key: ApiKey) -> None:
        assert self.audit is not None
        await self.audit.record(
            action,
            user_id=actor.user_id,
            org_id=actor.org_id,
            actor_type=actor.actor_type,
            resource_type="api_key",
            resource_id=key.id,
            details={"name": key.name, "prefix": key.prefix, "scopes": key.scopes},
        )

    async def authenticate(self, raw: str, client_ip: str | None) -> AuthenticatedKey:
        """Every failure is the same 401: malformed, unknown, revoked, expired, outside the
        allowed ranges, creator disabled or no longer a member of the key's organization."""
        if not is_well_formed(raw):
            raise InvalidAccessToken("api_key_malformed")
        state = await self.repository.state_by_hash(self.hasher.hash(raw))
        if state is None:
            raise InvalidAccessToken("api_key_unknown")
        key, now = state.key, datetime.now(UTC)
        if key.revoked_at is not None:
            raise InvalidAccessToken("api_key_revoked")
        if key.expires_at is not None and key.expires_at <= now:
            raise InvalidAccessToken("api_key_expired")
        if not state.creator.is_active:
            raise InvalidAccessToken("api_key_creator_disabled")
        if state.creator_role is None:
            raise InvalidAccessToken("api_key_creator_removed")
        if not _ip_allowed(client_ip, key.allowed_cidrs):
            raise InvalidAccessToken("api_key_ip_refused")
        if key.last_used_at is None or key.last_used_at < now - LAST_USED_RESOLUTION:
            await self.repository.touch(key.id, now, now - LAST_USED_RESOLUTION)
        return AuthenticatedKey(
            key_id=key.id,
            org_id=key.org_id,
            creator=state.creator,
            creator_role=Role(state.creator_role),
            scopes=frozenset(
                Permission(scope) for scope in key.scopes if scope in Permission._value2member_map_
            ),
            limits=KeyLimits(
                expires_at=key.expires_at,
                allowed_cidrs=tuple(key.allowed_cidrs) if key.allowed_cidrs else None,
            ),
        )
