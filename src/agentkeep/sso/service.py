"""The SSO login, in two steps, with no HTTP objects (the API router and the console both call it).

`start` records a pending login (state, nonce, PKCE verifier, bound to the browser by a
secret the caller puts in an httpOnly cookie) and answers the provider's authorization URL.
`complete` takes the callback's parameters and that secret back, checks and spends the
pending login (single use, in its own transaction so a failed callback cannot reuse it),
redeems the code, resolves the identity, applies the group mapping and opens a login
session exactly like a password login (`AuthService.open_session`): the same `IssuedTokens`.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agentkeep.audit.actions import AuditAction
from agentkeep.audit.service import AuditService
from agentkeep.auth.service import AuthService, IssuedTokens
from agentkeep.orgs.repository import OrgRepository
from agentkeep.security.passwords import PasswordHasher
from agentkeep.sso import errors
from agentkeep.sso.client import OidcClient
from agentkeep.sso.mapping import RoleChange, apply_role_mappings
from agentkeep.sso.models import OidcLoginState
from agentkeep.sso.provisioning import IdentityResolver, Resolved
from agentkeep.sso.repository import SsoRepository, digest

# How long a person has between the redirect to the provider and the callback.
LOGIN_STATE_TTL = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class LoginStart:
    authorization_url: str
    # Goes to the browser in an httpOnly cookie and comes back with the callback.
    browser_binding: str


@dataclass(frozen=True, slots=True)
class CallbackParams:
    state: str | None
    code: str | None
    error: str | None = None
    error_description: str | None = None


class OidcLoginService:
    def __init__(
        self,
        session: AsyncSession,
        sessionmaker: async_sessionmaker[AsyncSession],
        clients: dict[str, OidcClient],
        auth: AuthService,
        hasher: PasswordHasher,
        audit: AuditService,
    ) -> None:
        self.session = session
        self.sessionmaker = sessionmaker
        self.clients = clients
        self.auth = auth
        self.repository = SsoRepository(session)
        self.orgs = OrgRepository(session)
        self.audit = audit
        self.resolver = IdentityResolver(
            self.repository, self.orgs, hasher, auth.settings.oidc_link_verified_email
        )

    def _client(self, provider: str) -> OidcClient:
        client = self.clients.get(provider)
        if client is None:
            raise errors.UnknownProvider(f"No sign-in provider is named {provider!r}.")
        return client

    async def start(self, provider: str, redirect_uri: str, org: str | None = None) -> LoginStart:
        """Record a pending login and answer where to send the browser."""
        client = self._client(provider)
        request = await client.authorization_request(redirect_uri)
        binding = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        await self.repository.purge_expired_states(now)
        await self.repository.add(
            OidcLoginState(
                state_hash=digest(request.state),
                browser_hash=digest(binding),
                provider=provider,
                nonce=request.nonce,
                code_verifier=request.code_verifier,
                redirect_uri=redirect_uri,
                org=org,
                created_at=now,
                expires_at=now + LOGIN_STATE_TTL,
            )
        )
        return LoginStart(authorization_url=request.url, browser_binding=binding)

    async def complete(
        self, provider: str, params: CallbackParams, browser_binding: str | None
    ) -> IssuedTokens:
        """Finish the login the callback reports; audited either way."""
        try:
            return await self._complete(provider, params, browser_binding)
        except errors.SsoError as exc:
            self.audit.failure(
                AuditAction.SSO_LOGIN_FAILED,
                resource_type="auth",
                details={"provider": provider, "reason": exc.reason},
            )
            raise

    async def _take_state(
        self, provider: str, params: CallbackParams, browser_binding: str | None
    ) -> OidcLoginState:
        if not params.state:
            raise errors.StateMismatch("The callback carries no state; start the login again.")
        # Spent in its own committed transaction: whatever happens next, it never serves twice.
        async with self.sessionmaker() as session, session.begin():
            pending = await SsoRepository(session).take_state(params.state)
        now = datetime.now(UTC)
        if pending is None or pending.provider != provider or pending.expires_at <= now:
            raise errors.StateMismatch(
                "This sign-in link is unknown, used or expired (state mismatch); start the login again."
            )
        if browser_binding is None or not hmac.compare_digest(digest(browser_binding), pending.browser_hash):
            raise errors.StateMismatch(
                "This sign-in was started in another browser (state not bound to this one); "
                "start the login again here."
            )
        return pending

    async def _complete(
        self, provider: str, params: CallbackParams, browser_binding: str | None
    ) -> IssuedTokens:
        client = self._client(provider)
        pending = await self._take_state(provider, params, browser_binding)
        if params.error:
            raise errors.ProviderRefused(
                f"The provider refused the login: {params.error}"
                + (f" ({params.error_description[:200]})" if params.error_description else "")
            )
        if not params.code:
            raise errors.CodeRejected("The callback carries no authorization code; start the login again.")
        claims = await client.exchange(
            params.code,
            redirect_uri=pending.redirect_uri,
            code_verifier=pending.code_verifier,
            nonce=pending.nonce,
        )
        now = datetime.now(UTC)
        resolved = await self.resolver.resolve(client.config, claims, now)
        if not resolved.user.is_active:
            raise errors.AccountDisabled("This account is disabled.")
        changes = await apply_role_mappings(
            self.repository, self.orgs, client.config, resolved.user.id, claims
        )
        if client.config.revoke_sessions_on_role_loss and any(change.is_loss for change in changes):
            await self.auth.revoke_all_sessions(resolved.user.id, "sso_role_lost")
        membership = await (
            self.orgs.membership_by_ref(resolved.user.id, pending.org)
            if pending.org
            else self.orgs.personal_membership(resolved.user.id)
        )
        if membership is None:
            raise errors.NotAMember("You are not a member of the organization this login asked for.")
        # After a revocation above, the new session must start after its cut-off.
        issued = await self.auth.open_session(
            resolved.user.id, membership.org_id, self.audit.context, now=max(now, datetime.now(UTC))
        )
        await self._record(client, resolved, changes, issued)
        return issued

    async def _record(
        self, client: OidcClient, resolved: Resolved, changes: list[RoleChange], issued: IssuedTokens
    ) -> None:
        user = resolved.user
        provider = client.config.name
        if resolved.how != "existing":
            await self.audit.record(
                AuditAction.SSO_USER_PROVISIONED,
                user_id=user.id,
                resource_type="user",
                resource_id=user.id,
                details={
                    "provider": provider,
                    "issuer": client.config.issuer,
                    "username": user.username,
                    "email": user.email,
                    "linked": resolved.how == "linked",
                },
            )
        for change in changes:
            await self.audit.record(
                AuditAction.ROLE_CHANGED_BY_SSO,
                user_id=user.id,
                org_id=change.org_id,
                resource_type="membership",
                resource_id=user.id,
                details={
                    "provider": provider,
                    "org": change.org_slug,
                    "from": change.before.value if change.before else None,
                    "to": change.after.value if change.after else None,
                    "group": change.group,
                    "sessions_revoked": client.config.revoke_sessions_on_role_loss and change.is_loss,
                },
            )
        await self.audit.record(
            AuditAction.SSO_LOGIN_SUCCESS,
            user_id=user.id,
            org_id=issued.org_id,
            resource_type="auth",
            resource_id=user.id,
            details={"provider": provider, "username": user.username, "session_id": str(issued.session_id)},
        )


def provider_names(clients: dict[str, OidcClient]) -> list[tuple[str, str]]:
    return [(name, client.config.label) for name, client in clients.items()]


__all__ = ["CallbackParams", "IssuedTokens", "LoginStart", "OidcLoginService", "provider_names"]
