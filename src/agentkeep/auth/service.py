"""Business rules of authentication. No HTTP objects here, and never a commit.

Each failure raises an error that carries its real reason (LoginFailed.reason,
RefreshRejected.reason, InvalidAccessToken.reason) while the client sees one uniform
answer, so audit and lockout hooks can record what happened without leaking it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from agentkeep.audit.actions import AuditAction, AuditStatus
from agentkeep.audit.service import AuditService
from agentkeep.auth.errors import (
    BEARER_CHALLENGE,
    InvalidAccessToken,
    LoginFailed,
    RefreshRejected,
    RegistrationClosed,
    WeakPassword,
    WrongCurrentPassword,
)
from agentkeep.auth.models import AuthSession, RefreshToken
from agentkeep.auth.principal_cache import PrincipalCache, snapshot
from agentkeep.auth.repository import AuthRepository, SessionState
from agentkeep.config import Settings
from agentkeep.context import RequestContext
from agentkeep.errors import Conflict
from agentkeep.observability.metrics import Metrics
from agentkeep.orgs.repository import OrgRepository
from agentkeep.orgs.service import OrgNotFound, add_personal_org
from agentkeep.ratelimit.lockout import LoginThrottle
from agentkeep.rbac.permissions import Role
from agentkeep.security.password_policy import password_problems
from agentkeep.security.passwords import PasswordHasher
from agentkeep.security.tokens import InvalidToken, TokenCodec, new_refresh_token
from agentkeep.sso.errors import PasswordLoginDisabled
from agentkeep.users.models import User


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    access_token: str
    refresh_token: str
    expires_in: int
    refresh_expires_in: int
    session_id: uuid.UUID
    user_id: uuid.UUID
    org_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class Authenticated:
    user: User
    session_id: uuid.UUID
    jti: str
    org_id: uuid.UUID | None
    role: Role | None = None


def normalise_identifier(value: str) -> str:
    """Usernames and emails are stored trimmed and in lower case."""
    return value.strip().lower()


def check_password_policy(password: str, *, username: str, email: str) -> None:
    problems = password_problems(password, username=username, email=email)
    if problems:
        raise WeakPassword(
            "The password " + "; ".join(problem.message for problem in problems) + ".",
            extra={"password_problems": [problem.code for problem in problems]},
        )


async def create_user(
    repository: AuthRepository,
    hasher: PasswordHasher,
    username: str,
    email: str,
    password: str,
    *,
    is_superuser: bool = False,
) -> User:
    """Create an account after the password policy; 409 when username or email is taken."""
    username, email = normalise_identifier(username), normalise_identifier(email)
    check_password_policy(password, username=username, email=email)
    # Hash before touching the database, so no connection is held while hashing.
    password_hash = await hasher.hash(password)
    taken = await repository.username_or_email_taken(username, email)
    if taken:
        raise Conflict(f"This {taken} is already registered.", extra={"field": taken})
    user = User(username=username, email=email, password_hash=password_hash, is_superuser=is_superuser)
    try:
        await repository.add(user)
    except IntegrityError:
        # A concurrent registration won between our check and our insert.
        raise Conflict("This username or email is already registered.") from None
    return user


async def authenticate_access_token(
    session: AsyncSession,
    tokens: TokenCodec,
    access_token: str | None,
    cache: PrincipalCache[SessionState] | None = None,
) -> Authenticated:
    """Verify the token and that its session is alive now (one query, or none when `cache`
    remembers the session from the last second; the checks are made either way)."""
    if not access_token:
        raise InvalidAccessToken("missing")
    try:
        claims = tokens.decode_access(access_token)
    except InvalidToken as exc:
        raise InvalidAccessToken(exc.reason) from None
    cache_key = f"session:{claims.session_id}:{claims.user_id}"
    state = cache.get(cache_key) if cache is not None else None
    if state is None:
        state = await AuthRepository(session).session_state(claims.session_id, claims.user_id)
        if state is None:
            raise InvalidAccessToken("unknown_session")
        if cache is not None:
            cache.put(cache_key, SessionState(snapshot(state.user), snapshot(state.session), state.role))
    if not state.is_alive(datetime.now(UTC)):
        raise InvalidAccessToken("session_revoked")
    if claims.org_id != state.session.org_id:
        # The session switched organization since this token was minted.
        raise InvalidAccessToken("org_switched")
    return Authenticated(
        user=state.user,
        session_id=claims.session_id,
        jti=claims.jti,
        org_id=state.session.org_id,
        role=Role(state.role) if state.role else None,
    )


class AuthService:
    """Authentication rules. Every outcome is audited: changes with `audit.record` in the
    request's transaction, refusals with `audit.failure` after it (they survive rollback)."""

    def __init__(
        self,
        session: AsyncSession,
        settings: Settings,
        hasher: PasswordHasher,
        tokens: TokenCodec,
        audit: AuditService,
        throttle: LoginThrottle,
        metrics: Metrics | None = None,
    ) -> None:
        self.repository = AuthRepository(session)
        self.orgs = OrgRepository(session)
        self.settings = settings
        self.hasher = hasher
        self.tokens = tokens
        self.audit = audit
        self.throttle = throttle
        self.metrics = metrics

    async def register(self, username: str, email: str, password: str, context: RequestContext) -> User:
        attempted = {"username": normalise_identifier(username), "email": normalise_identifier(email)}
        try:
            if not self.settings.registration_open:
                raise RegistrationClosed("Self-registration is disabled on this server.")
            user = await create_user(self.repository, self.hasher, username, email, password)
        except (RegistrationClosed, WeakPassword, Conflict) as exc:
            self.audit.failure(AuditAction.REGISTER_FAILED, details={**attempted, "reason": exc.type_slug})
            raise
        org = await add_personal_org(self.orgs, user)
        await self.audit.record(
            AuditAction.USER_REGISTERED,
            user_id=user.id,
            resource_type="user",
            resource_id=user.id,
            details={"username": user.username, "email": user.email},
        )
        await self.audit.record(
            AuditAction.ORG_CREATED,
            user_id=user.id,
            org_id=org.id,
            resource_type="organization",
            resource_id=org.id,
            details={"slug": org.slug, "is_personal": True},
        )
        return user

    async def login(
        self, identifier: str, password: str, context: RequestContext, org: str | None = None
    ) -> IssuedTokens:
        """Check the password and open a new session acting in `org` (id or slug; default the
        personal organization); audited either way, locked after repeated failures
        (RATE_LIMIT_LOGIN_FAILURES), with the same 401 in every case (non-member `org` too)."""
        login = normalise_identifier(identifier)
        try:
            if await self.throttle.is_locked(login):
                # No hashing while locked: a stuffing burst costs the server nothing.
                raise LoginFailed("locked", username=login)
            issued = await self._login(login, password, context, org)
        except LoginFailed as exc:
            await self._login_failed(exc)
            if not self.settings.password_login_enabled:
                # One answer for every refusal: it tells nothing about the account.
                raise PasswordLoginDisabled(
                    "Password login is turned off on this server; sign in with single sign-on "
                    "(GET /auth/oidc/providers lists the providers).",
                    headers=BEARER_CHALLENGE,
                ) from None
            raise
        await self.throttle.reset(login)
        self._count_login("success")
        details: dict[str, object] = {"username": login, "session_id": str(issued.session_id)}
        if not self.settings.password_login_enabled:
            details["break_glass"] = True
        await self.audit.record(
            AuditAction.LOGIN_SUCCESS,
            user_id=issued.user_id,
            resource_type="auth",
            resource_id=issued.user_id,
            org_id=issued.org_id,
            details=details,
        )
        return issued

    async def _login_failed(self, exc: LoginFailed) -> None:
        self._count_login(exc.reason)
        self.audit.failure(
            AuditAction.LOGIN_FAILED,
            user_id=exc.user_id,
            resource_type="auth",
            resource_id=exc.user_id,
            details={"username": exc.username, "reason": exc.reason},
        )
        if exc.reason != "locked" and await self.throttle.register_failure(exc.username):
            self.audit.failure(
                AuditAction.ACCOUNT_LOCKED,
                user_id=exc.user_id,
                status=AuditStatus.DENIED,
                details={"username": exc.username, "lockout_seconds": self.settings.account_lockout_seconds},
            )

    def _count_login(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.logins.labels(outcome).inc()

    async def _login(
        self, login: str, password: str, context: RequestContext, org: str | None
    ) -> IssuedTokens:
        # The session counts as created before the password was read: a password change
        # that commits while this login is hashing the old password still cuts it off.
        now = datetime.now(UTC)
        account = await self.repository.find_login_account(login)
        # Hashing can wait for a permit: hold no database connection meanwhile.
        await self.repository.release_connection()
        if account is None:
            await self.hasher.verify_dummy(password)
            raise LoginFailed("unknown_user", username=login)
        valid, new_hash = await self.hasher.verify_and_update(password, account.password_hash)
        if not valid:
            raise LoginFailed("bad_password", username=login, user_id=account.id)
        if not account.is_active:
            raise LoginFailed("disabled", username=login, user_id=account.id)
        membership = await (
            self.orgs.membership_by_ref(account.id, org) if org else self.orgs.personal_membership(account.id)
        )
        if membership is None:
            raise LoginFailed("not_a_member", username=login, user_id=account.id)
        if not self.settings.password_login_enabled and not account.is_superuser:
            # Only the instance administrator keeps password login (break-glass, docs/sso.md).
            raise LoginFailed("password_login_disabled", username=login, user_id=account.id)
        if new_hash is not None:
            await self.repository.set_password_hash(account.id, new_hash, expected=account.password_hash)
        return await self.open_session(account.id, membership.org_id, context, now=now)

    async def open_session(
        self, user_id: uuid.UUID, org_id: uuid.UUID, context: RequestContext, *, now: datetime | None = None
    ) -> IssuedTokens:
        """A new login session acting in `org_id` and its first token pair: what a password
        login issues, also used by single sign-on (so refresh, revocation and audit are alike)."""
        now = now or datetime.now(UTC)
        auth_session = AuthSession(
            id=uuid.uuid4(),
            user_id=user_id,
            created_at=now,
            expires_at=now + timedelta(seconds=self.settings.refresh_token_ttl_seconds),
            ip=context.ip_address,
            user_agent=context.user_agent,
            org_id=org_id,
        )
        await self.repository.add(auth_session)
        return await self._issue(user_id, auth_session, now)

    async def _issue(self, user_id: uuid.UUID, auth_session: AuthSession, now: datetime) -> IssuedTokens:
        refresh_token = new_refresh_token()
        # A refresh token never outlives its family: the login's absolute lifetime bounds it.
        await self.repository.add(
            RefreshToken(
                session_id=auth_session.id,
                token_hash=self.tokens.hash_refresh_token(refresh_token),
                issued_at=now,
                expires_at=auth_session.expires_at,
            )
        )
        access_token, _ = self.tokens.issue_access(
            user_id, auth_session.id, org_id=auth_session.org_id, now=now
        )
        return IssuedTokens(
            access_token=access_token,
            refresh_token=refresh_token,
            expires_in=self.tokens.access_ttl_seconds,
            refresh_expires_in=max(0, int((auth_session.expires_at - now).total_seconds())),
            session_id=auth_session.id,
            user_id=user_id,
            org_id=auth_session.org_id,
        )

    async def refresh(self, refresh_token: str, context: RequestContext) -> IssuedTokens:
        """Rotate: the presented token becomes used and a new pair is issued in its family.

        Presenting a token that was already used means two parties hold it (RFC 9700
        4.14.2): the whole family is revoked, the legitimate client's tokens included.
        """
        now = datetime.now(UTC)
        token_hash = self.tokens.hash_refresh_token(refresh_token)
        claimed = await self.repository.claim_refresh_token(token_hash, now)
        found = await self.repository.refresh_token_state(token_hash)
        if found is None:
            raise RefreshRejected("unknown_token")
        token, state = found
        if not claimed:
            if token.used_at is not None:
                await self.repository.revoke_session(state.session.id, "refresh_token_reused", now)
                self.audit.failure(
                    AuditAction.REFRESH_TOKEN_REUSED,
                    user_id=state.user.id,
                    status=AuditStatus.DENIED,
                    resource_type="session",
                    resource_id=state.session.id,
                    details={"family_revoked": True},
                )
                raise RefreshRejected("reused", family_revoked=True)
            raise RefreshRejected("expired")
        if not state.is_alive(now):
            raise RefreshRejected("session_revoked")
        issued = await self._issue(state.user.id, state.session, now)
        await self.audit.record(
            AuditAction.TOKEN_REFRESHED,
            user_id=state.user.id,
            resource_type="session",
            resource_id=state.session.id,
        )
        return issued

    async def switch_org(self, user_id: uuid.UUID, session_id: uuid.UUID, org: str) -> IssuedTokens:
        """Act in another organization the user belongs to: the session (refresh-token
        family) moves there and a new pair is issued; tokens minted before stop working."""
        membership = await self.orgs.membership_by_ref(user_id, org)
        if membership is None:
            raise OrgNotFound("No such organization.")
        auth_session = await self.repository.get_session(session_id)
        if auth_session is None:
            raise InvalidAccessToken("unknown_session")
        now = datetime.now(UTC)
        auth_session.org_id = membership.org_id
        await self.repository.retire_refresh_tokens(session_id, now)
        issued = await self._issue(user_id, auth_session, now)
        await self.audit.record(
            AuditAction.TOKEN_REFRESHED,
            user_id=user_id,
            org_id=membership.org_id,
            resource_type="session",
            resource_id=session_id,
            details={"switched_org": str(membership.org_id)},
        )
        return issued

    async def logout(self, user_id: uuid.UUID, session_id: uuid.UUID) -> None:
        await self.repository.revoke_session(session_id, "logout", datetime.now(UTC))
        await self.audit.record(
            AuditAction.LOGOUT, user_id=user_id, resource_type="session", resource_id=session_id
        )

    async def change_password(self, user_id: uuid.UUID, current_password: str, new_password: str) -> None:
        """Replace the password and end every session of the user, this one included."""
        # Read in this transaction: the caller's `Principal.user` may come from the principal
        # cache, shared and detached, and must never be written through.
        user = await self.repository.session.get(User, user_id, populate_existing=True)
        if user is None:
            raise InvalidAccessToken("unknown_user")
        try:
            if not await self.hasher.verify(current_password, user.password_hash):
                raise WrongCurrentPassword("The current password is incorrect.")
            check_password_policy(new_password, username=user.username, email=user.email)
        except (WrongCurrentPassword, WeakPassword) as exc:
            self.audit.failure(
                AuditAction.PASSWORD_CHANGE_FAILED, user_id=user.id, details={"reason": exc.type_slug}
            )
            raise
        user.password_hash = await self.hasher.hash(new_password)
        await self.revoke_all_sessions(user.id, "password_changed")
        await self.audit.record(
            AuditAction.PASSWORD_CHANGED, user_id=user.id, resource_type="user", resource_id=user.id
        )

    async def revoke_all_sessions(self, user_id: uuid.UUID, reason: str) -> None:
        """End every session of the user on every instance (also call when disabling a user)."""
        await self.repository.revoke_user_sessions(user_id, reason, datetime.now(UTC))
