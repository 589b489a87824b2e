"""API keys: bound to one organization and its creator, stored only as an HMAC."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from agentkeep.db.base import Base, PortableJSON, UUIDPrimaryKey, utcnow

API_KEY_NAME_MAX = 100
API_KEY_PREFIX_MAX = 16
API_KEY_HASH_LENGTH = 64


class ApiKey(UUIDPrimaryKey, Base):
    __tablename__ = "api_keys"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    created_by: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # The key that created this one (NULL: created by a user through a login session).
    # Revoking a key revokes its descendants; a deleted key (its creator or organization
    # deleted) takes them with it, as they share both.
    parent_key_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("api_keys.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(API_KEY_NAME_MAX))
    # Non-secret start of the key, shown in listings so people can tell keys apart.
    prefix: Mapped[str] = mapped_column(String(API_KEY_PREFIX_MAX))
    key_hash: Mapped[str] = mapped_column(String(API_KEY_HASH_LENGTH), unique=True)
    scopes: Mapped[list[str]] = mapped_column(PortableJSON)
    allowed_cidrs: Mapped[list[Any] | None] = mapped_column(PortableJSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
