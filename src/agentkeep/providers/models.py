"""Provider credentials: one row per named endpoint of an organization, the key encrypted."""

from __future__ import annotations

import uuid

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from agentkeep.db.base import Base, Timestamps, UUIDPrimaryKey

PROVIDER_NAME_MAX = 100
PROVIDER_KIND_MAX = 32
BASE_URL_MAX = 2048
API_KEY_MAX = 4096
KEY_HINT_MAX = 8


class Provider(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "providers"
    __table_args__ = (UniqueConstraint("org_id", "name", name="uq_providers_org_id_name"),)

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    name: Mapped[str] = mapped_column(String(PROVIDER_NAME_MAX))
    kind: Mapped[str] = mapped_column(String(PROVIDER_KIND_MAX))
    base_url: Mapped[str] = mapped_column(String(BASE_URL_MAX))
    # Fernet token (SecretBox) of the API key: never the key itself.
    api_key_ciphertext: Mapped[str] = mapped_column(Text)
    # The key's last characters, so people can tell keys apart; empty for short keys.
    key_hint: Mapped[str] = mapped_column(String(KEY_HINT_MAX))
