"""One row per (organization, principal, scope, key): the request's fingerprint and the id
of the resource the first request created."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from agentkeep.db.base import Base, UUIDPrimaryKey, utcnow

IDEMPOTENCY_KEY_MAX = 255
# What validate_key accepts, for the OpenAPI document: 1 to 255 printable ASCII characters.
IDEMPOTENCY_KEY_PATTERN = rf"^[\x20-\x7e]{{1,{IDEMPOTENCY_KEY_MAX}}}$"
PRINCIPAL_MAX = 64
SCOPE_MAX = 100
FINGERPRINT_LENGTH = 64


class IdempotencyKey(UUIDPrimaryKey, Base):
    __tablename__ = "idempotency_keys"
    __table_args__ = (
        UniqueConstraint(
            "org_id", "principal", "scope", "key", name="uq_idempotency_keys_org_id_principal_scope_key"
        ),
    )

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    # "user:<uuid>" or "api_key:<uuid>": keys of different callers never meet.
    principal: Mapped[str] = mapped_column(String(PRINCIPAL_MAX))
    # What the key creates, e.g. "agents.create" or "runs.create:<agent id>".
    scope: Mapped[str] = mapped_column(String(SCOPE_MAX))
    key: Mapped[str] = mapped_column(String(IDEMPOTENCY_KEY_MAX))
    fingerprint: Mapped[str] = mapped_column(String(FINGERPRINT_LENGTH))
    resource_id: Mapped[uuid.UUID]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
