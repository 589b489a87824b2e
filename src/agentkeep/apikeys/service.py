"""API key rules: create (scopes within what the creator effectively holds, rbac.grants),
list, revoke (with every key created through the revoked one), and the two-gate
authentication of every request that presents a key. Never commits."""

from __future__ import annotations

import ipaddress
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from agentkeep.apikeys.models import ApiKey
from agentkeep.apikeys.repository import ApiKeyRepository, KeyState
from agentkeep.apikeys.secret import ApiKeyHasher, display_prefix, is_well_formed, new_api_key
from agentkeep.audit.actions import AuditAction
from agentkeep.audit.service import AuditService
from agentkeep.auth.errors import InvalidAccessToken
from agentkeep.auth.principal_cache import PrincipalCache, snapshot
from agentkeep.db.session import after_commit, on_success
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
        # See the repository: this write orders the child against a revocation of its parent.
        if creator.api_key_id is not None and not await self.repository.use_if_live(
            creator.org_id, creator.api_key_id, now
        ):
            raise InvalidAccessToken("api_key_revoked")
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
            parent_key_id=creator.api_key_id,
        )
        await self.repository.add(key)
        parent = {"parent_key_id": str(key.parent_key_id)} if key.parent_key_id else {}
        await self._record(AuditAction.API_KEY_CREATED, creator, key, parent)
        return key, secret

    async def page(
        self, org_id: uuid.UUID, limit: int, cursor: str | None
    ) -> tuple[list[ApiKey], str | None]:
        return await self.repository.page_in_org(org_id, limit, cursor)

    async def revoke(self, actor: Grantor, key_id: uuid.UUID) -> None:
        """Revoke the key and every key created through it (children, grandchildren...), one
        `api_key_revoked` record each. Revoking a revoked key only catches descendants still
        live, so it stays a no-op once everything is revoked."""
        assert actor.org_id is not None
        key = await self.repository.lock_in_org(actor.org_id, key_id)
        if key is None:
            raise ApiKeyNotFound("No such API key.")
        now = datetime.now(UTC)
        if key.revoked_at is None:
            key.revoked_at = now
            await self._record(AuditAction.API_KEY_REVOKED, actor, key)
        # One generation at a time, each written before the next is read (see the repository).
        generation = [key.id]
        while generation:
            await self.repository.flush()
            children = await self.repository.children(actor.org_id, generation)
            for child in children:
                if child.revoked_at is None:
                    child.revoked_at = now
                    cascade = {
                        "reason": "parent_revoked",
                        "parent_key_id": str(child.parent_key_id),
                        "cascaded_from": str(key.id),
                    }
                    await self._record(AuditAction.API_KEY_REVOKED, actor, child, cascade)
            generation = [child.id for child in children]

    async def _record(
        self, action: AuditAction, actor: Grantor, key: ApiKey, extra: dict[str, str] | None = None
    ) -> None:
        assert self.audit is not None
        await self.audit.record(
            action,
            user_id=actor.user_id,
            org_id=actor.org_id,
            actor_type=actor.actor_type,
            resource_type="api_key",
            resource_id=key.id,
            details={"name": key.name, "prefix": key.prefix, "scopes": key.scopes, **(extra or {})},
        )

    async def _record_use(self, key: ApiKey, now: datetime) -> None:
        """Set the key's last use, kept only if the request succeeds: in its transaction, or
        after it for a safe request, which has none (db/session.py). Once committed, the
        remembered row says so too (it is detached: that changes nothing in the database)."""

        async def remember() -> None:
            set_committed_value(key, "last_used_at", now)

        session = self.repository.session
        await on_success(session, partial(self.repository.touch, key.id, now, now - LAST_USED_RESOLUTION))
        after_commit(session, remember)

    async def authenticate(
        self, raw: str, client_ip: str | None, cache: PrincipalCache[KeyState] | None = None
    ) -> AuthenticatedKey:
        """Every failure is the same 401: malformed, unknown, revoked, expired, outside the
        allowed ranges, creator disabled or no longer a member of the key's organization.
        `cache` may answer the lookup (auth/principal_cache.py); the checks are made anyway."""
        if not is_well_formed(raw):
            raise InvalidAccessToken("api_key_malformed")
        key_hash = self.hasher.hash(raw)
        cache_key = f"api_key:{key_hash}"
        state = cache.get(cache_key) if cache is not None else None
        if state is None:
            state = await self.repository.state_by_hash(key_hash)
            if state is None:
                raise InvalidAccessToken("api_key_unknown")
            if cache is not None:
                # Carry on with the remembered copies, so recording the use below updates
                # what the next requests of this second read.
                state = KeyState(snapshot(state.key), snapshot(state.creator), state.creator_role)
                cache.put(cache_key, state)
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
            await self._record_use(key, now)
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
