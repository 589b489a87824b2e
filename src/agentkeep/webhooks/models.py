"""Webhooks and their deliveries.

A webhook's signing secrets are Fernet tokens (SecretBox); after a rotation the previous
secret is kept, encrypted too, until its overlap ends. A delivery row is both the outbox
entry (written in the transaction of the state change that caused the event) and the
delivery log: its status, attempts and the receiver's last answer.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from agentkeep.db.base import Base, PortableJSON, Timestamps, UUIDPrimaryKey

WEBHOOK_URL_MAX = 2048
WEBHOOK_DESCRIPTION_MAX = 200
EVENT_TYPE_MAX = 64
MESSAGE_ID_MAX = 64
DELIVERY_STATUS_MAX = 16
DELIVERY_ERROR_MAX = 300
RESPONSE_BODY_MAX = 1024


class Webhook(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "webhooks"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    url: Mapped[str] = mapped_column(String(WEBHOOK_URL_MAX))
    description: Mapped[str] = mapped_column(String(WEBHOOK_DESCRIPTION_MAX), default="")
    events: Mapped[list[str]] = mapped_column(PortableJSON, default=list)
    # Opt-in: run events carry the run's output text (never secrets either way).
    include_content: Mapped[bool] = mapped_column(Boolean, default=False)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Why the webhook was disabled by the system ("consecutive_failures"); NULL otherwise.
    disabled_reason: Mapped[str | None] = mapped_column(String(64))
    # Deliveries in a row that failed for good; a success resets it.
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    secret_ciphertext: Mapped[str] = mapped_column(Text)
    previous_secret_ciphertext: Mapped[str | None] = mapped_column(Text)
    previous_secret_expires_at: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(default=1)


class WebhookDelivery(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_webhook_created", "webhook_id", "created_at"),
    )

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    webhook_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    # The `webhook-id` header: one per event, the same on every attempt and redelivery.
    message_id: Mapped[str] = mapped_column(String(MESSAGE_ID_MAX))
    event_type: Mapped[str] = mapped_column(String(EVENT_TYPE_MAX))
    # The envelope sent as the body: {"type", "timestamp", "data"}.
    payload: Mapped[dict[str, Any]] = mapped_column(PortableJSON)
    # pending -> succeeded | failed
    status: Mapped[str] = mapped_column(String(DELIVERY_STATUS_MAX))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    # An attempt in progress holds the delivery until then; a sender that died lets it lapse.
    locked_until: Mapped[datetime | None]
    last_attempt_at: Mapped[datetime | None]
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[str | None] = mapped_column(Text)
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(DELIVERY_ERROR_MAX))
    redelivery_of: Mapped[uuid.UUID | None]
