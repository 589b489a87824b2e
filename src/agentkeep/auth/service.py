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

from agentkeep.auth.errors import (
    InvalidAccessToken,
    LoginFailed,
    RefreshRejected,
    RegistrationClosed,
    WeakPassword,
    WrongCurrentPassword,
)
from agentkeep.auth.models import AuthSession, RefreshToken
from agentkeep.auth.repository import AuthRepository
from agentkeep.config import Settings
from agentkeep.context import RequestContext
from agentkeep.errors import Conflict
from agentkeep.security.password_policy import password_problems
from agentkeep.security.passwords import PasswordHasher
from agentkeep.security.tokens import InvalidToken, TokenCodec, new_refresh_token
from agentkeep.users.models import User


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    access_token: str
    refresh_token: str
    expires_in: int
    refresh_expires_in: int
    session_id: uuid.UUID
    user_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class Authenticated:
    user: User
    session_id: uuid.UUID
    jti: str
    org_id: uuid.UUID | None


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


class AuthService:
    def __init__(
        self, session: AsyncSession, settings: Settings, hasher: PasswordHasher, tokens: TokenCodec
    ) -> None:
        self.repository = AuthRepository(session)
        self.settings = settings
        self.hasher = hasher
        self.tokens = tokens

    async def create_user(
        self, username: str, email: str, password: str, *, is_superuser: bool = False
    ) -> User:
        """Create an account after the password policy; 409 when username or email is taken."""
        username, email = normalise_identifier(username), normalise_identifier(email)
        check_password_policy(password, username=username, email=email)
        # Hash before touching the database, so no connection is held while hashing.
        password_hash = await self.hasher.hash(password)
        taken = await self.repository.username_or_email_taken(username, email)
        if taken:
            raise Conflict(f"This {taken} is already registered.", extra={"field": taken})
        user = User(username=username, email=email, password_hash=password_hash, is_superuser=is_superuser)
        try:
            await self.repository.add(user)
        except IntegrityError:
            # A concurrent registration won between our check and our insert.
            raise Conflict("This username or email is already registered.") from None
        return user

    async def register(self, username: str, email: str, password: str, context: RequestContext) -> User:
        if not self.settings.allow_registration:
            raise RegistrationClosed("Self-registration is disabled on this server.")
        return await self.create_user(username, email, password)

    async def login(self, identifier: str, password: str, context: RequestContext) -> IssuedTokens:
        """Check the password and open a new session; LoginFailed carries why it failed."""
        login = normalise_identifier(identifier)
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
            raise LoginFailed("bad_password", username=login)
        if not account.is_active:
            raise LoginFailed("disabled", username=login)
        if new_hash is not None:
            await self.repository.set_password_hash(account.id, new_hash, expected=account.password_hash)
        auth_session = AuthSession(
            id=uuid.uuid4(),
            user_id=account.id,
            created_at=now,
            expires_at=now + timedelta(seconds=self.settings.refresh_token_ttl_seconds),
            ip=context.ip_address,
            user_agent=context.user_agent,
        )
        await self.repository.add(auth_session)
        return await self._issue(account.id, auth_session, now)

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
        access_token, _ = self.tokens.issue_access(user_id, auth_session.id, now=now)
        return IssuedTokens(
            access_token=access_token,
            refresh_token=refresh_token,
            expires_in=self.tokens.access_ttl_seconds,
            refresh_expires_in=max(0, int((auth_session.expires_at - now).total_seconds())),
            session_id=auth_session.id,
            user_id=user_id,
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
                raise RefreshRejected("reused", family_revoked=True)
            raise RefreshRejected("expired")
        if not state.is_alive(now):
            raise RefreshRejected("session_revoked")
        return await self._issue(state.user.id, state.session, now)

    async def authenticate(self, access_token: str | None) -> Authenticated:
        """Verify the token and that its session is alive now (one query, every instance)."""
        if not access_token:
            raise InvalidAccessToken("missing")
        try:
            claims = self.tokens.decode_access(access_token)
        except InvalidToken as exc:
            raise InvalidAccessToken(exc.reason) from None
        state = await self.repository.session_state(claims.session_id, claims.user_id)
        if state is None:
            raise InvalidAccessToken("unknown_session")
        if not state.is_alive(datetime.now(UTC)):
            raise InvalidAccessToken("session_revoked")
        return Authenticated(user=state.user, session_id=claims.session_id, jti=claims.jti, org_id=None)

    async def logout(self, session_id: uuid.UUID) -> None:
        await self.repository.revoke_session(session_id, "logout", datetime.now(UTC))

    async def change_password(self, user: User, current_password: str, new_password: str) -> None:
        """Replace the password and end every session of the user, this one included."""
        if not await self.hasher.verify(current_password, user.password_hash):
            raise WrongCurrentPassword("The current password is incorrect.")
        check_password_policy(new_password, username=user.username, email=user.email)
        user.password_hash = await self.hasher.hash(new_password)
        await self.revoke_all_sessions(user.id, "password_changed")

    async def revoke_all_sessions(self, user_id: uuid.UUID, reason: str) -> None:
        """End every session of the user on every instance (also call when disabling a user)."""
        await self.repository.revoke_user_sessions(user_id, reason, datetime.now(UTC))
