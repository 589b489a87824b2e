"""Login sessions (refresh-token families) and the refresh tokens issued in each."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from agentkeep.db.base import Base, UUIDPrimaryKey, utcnow

IP_MAX = 45
USER_AGENT_MAX = 512
REASON_MAX = 32
TOKEN_HASH_LENGTH = 64


class AuthSession(UUIDPrimaryKey, Base):
    """One login: every refresh and access token issued from it belongs to this family."""

    __tablename__ = "auth_sessions"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    revoked_reason: Mapped[str | None] = mapped_column(String(REASON_MAX))
    ip: Mapped[str | None] = mapped_column(String(IP_MAX))
    user_agent: Mapped[str | None] = mapped_column(String(USER_AGENT_MAX))
    # The organization this login acts in (chosen at login, changed by /auth/switch-org).
    org_id: Mapped[uuid.UUID | None]


class RefreshToken(UUIDPrimaryKey, Base):
    """A refresh token, stored only as its HMAC; `used_at` is set once it has been rotated."""

    __tablename__ = "refresh_tokens"

    session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("auth_sessions.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(TOKEN_HASH_LENGTH), unique=True)
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
