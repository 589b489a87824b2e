"""The user account table."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, false, true
from sqlalchemy.orm import Mapped, mapped_column

from agentkeep.db.base import Base, Timestamps, UUIDPrimaryKey

USERNAME_MAX = 64
EMAIL_MAX = 254


class User(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "users"

    # Stored normalised (trimmed, lower-case) so uniqueness is case-insensitive everywhere.
    username: Mapped[str] = mapped_column(String(USERNAME_MAX), unique=True)
    email: Mapped[str] = mapped_column(String(EMAIL_MAX), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(default=True, server_default=true())
    is_superuser: Mapped[bool] = mapped_column(default=False, server_default=false())
    # Sessions created at or before this instant are dead (password change, disabling).
    tokens_valid_after: Mapped[datetime | None]
