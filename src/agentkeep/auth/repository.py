"""Queries for users, login sessions and refresh tokens."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, bindparam, or_, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from agentkeep.auth.models import AuthSession, RefreshToken
from agentkeep.orgs.models import Membership
from agentkeep.users.models import User

# Every authenticated request runs this query: built once, with the ids as parameters.
_SESSION_STATE = (
    select(User, AuthSession, Membership.role)
    .join(AuthSession, AuthSession.user_id == User.id)
    .outerjoin(Membership, and_(Membership.org_id == AuthSession.org_id, Membership.user_id == User.id))
    .where(AuthSession.id == bindparam("session_id"), User.id == bindparam("user_id"))
)


@dataclass(frozen=True, slots=True)
class SessionState:
    """What a request needs to know to trust a token: the user and its session, in one row."""

    user: User
    session: AuthSession
    # The caller's role in the session's organization now; None when not (or no longer) a member.
    role: str | None = None

    def is_alive(self, now: datetime) -> bool:
        cut_off = self.user.tokens_valid_after
        return (
            self.user.is_active
            and self.session.revoked_at is None
            and self.session.expires_at > now
            and (cut_off is None or self.session.created_at > cut_off)
        )


@dataclass(frozen=True, slots=True)
class LoginAccount:
    """The columns a login needs, as plain values (they outlive the transaction)."""

    id: uuid.UUID
    password_hash: str
    is_active: bool
    is_superuser: bool = False


class AuthRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def find_login_account(self, identifier: str) -> LoginAccount | None:
        statement = select(User.id, User.password_hash, User.is_active, User.is_superuser).where(
            or_(User.username == identifier, User.email == identifier)
        )
        row = (await self.session.execute(statement)).first()
        if row is None:
            return None
        return LoginAccount(
            id=row.id, password_hash=row.password_hash, is_active=row.is_active, is_superuser=row.is_superuser
        )

    async def release_connection(self) -> None:
        """End the read-only transaction so the pooled connection is free during slow work.

        Only called before anything was written; the next statement starts a new transaction.
        """
        if self.session.new or self.session.dirty or self.session.deleted:
            raise RuntimeError("release_connection() would discard pending changes")
        await self.session.rollback()

    async def set_password_hash(self, user_id: uuid.UUID, new_hash: str, *, expected: str) -> None:
        """Replace the hash unless the password changed meanwhile (then keep the newer one)."""
        await self.session.execute(
            update(User)
            .where(User.id == user_id, User.password_hash == expected)
            .values(password_hash=new_hash)
            .execution_options(synchronize_session=False)
        )

    async def username_or_email_taken(self, username: str, email: str) -> str | None:
        """'username' or 'email' when already registered, else None."""
        statement = select(User.username, User.email).where(
            or_(User.username == username, User.email == email)
        )
        for row in await self.session.execute(statement):
            return "username" if row.username == username else "email"
        return None

    async def add(self, *objects: object) -> None:
        self.session.add_all(objects)
        await self.session.flush()

    async def session_state(self, session_id: uuid.UUID, user_id: uuid.UUID) -> SessionState | None:
        """The session, its user and the user's current role in the session's organization
        (one query: role changes and removals count from the next request)."""
        parameters = {"session_id": session_id, "user_id": user_id}
        row = (await self.session.execute(_SESSION_STATE, parameters)).first()
        return SessionState(user=row[0], session=row[1], role=row[2]) if row else None

    async def get_session(self, session_id: uuid.UUID) -> AuthSession | None:
        return await self.session.get(AuthSession, session_id)

    async def retire_refresh_tokens(self, session_id: uuid.UUID, now: datetime) -> None:
        """Mark every unused refresh token of the session used (a switch issues a new one)."""
        await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.session_id == session_id, RefreshToken.used_at.is_(None))
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )

    async def claim_refresh_token(self, token_hash: str, now: datetime) -> bool:
        """Mark the token used if nobody has; True for exactly one of any concurrent callers.

        A conditional UPDATE is atomic on both backends: PostgreSQL re-checks the WHERE
        clause after waiting for a concurrent writer's row lock, and SQLite serialises writers
        (this is the transaction's first statement, so it never reads a stale snapshot).
        """
        statement = (
            update(RefreshToken)
            .where(
                RefreshToken.token_hash == token_hash,
                RefreshToken.used_at.is_(None),
                RefreshToken.expires_at > now,
            )
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
        result: CursorResult[tuple[()]] = await self.session.execute(statement)  # type: ignore[assignment]
        return result.rowcount == 1

    async def refresh_token_state(self, token_hash: str) -> tuple[RefreshToken, SessionState] | None:
        statement = (
            select(RefreshToken, AuthSession, User)
            .join(AuthSession, AuthSession.id == RefreshToken.session_id)
            .join(User, User.id == AuthSession.user_id)
            .where(RefreshToken.token_hash == token_hash)
        )
        row = (await self.session.execute(statement)).first()
        if row is None:
            return None
        return row[0], SessionState(user=row[2], session=row[1])

    async def revoke_session(self, session_id: uuid.UUID, reason: str, now: datetime) -> None:
        await self.session.execute(
            update(AuthSession)
            .where(AuthSession.id == session_id, AuthSession.revoked_at.is_(None))
            .values(revoked_at=now, revoked_reason=reason)
            .execution_options(synchronize_session=False)
        )

    async def revoke_user_sessions(self, user_id: uuid.UUID, reason: str, now: datetime) -> None:
        """Revoke every session of the user, and any created before now that we did not see."""
        await self.session.execute(
            update(AuthSession)
            .where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None))
            .values(revoked_at=now, revoked_reason=reason)
            .execution_options(synchronize_session=False)
        )
        await self.session.execute(
            update(User)
            .where(User.id == user_id)
            .values(tokens_valid_after=now)
            .execution_options(synchronize_session=False)
        )
