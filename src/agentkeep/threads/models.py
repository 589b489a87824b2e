"""Threads: conversations with one agent, owned by the member (or API key) that started them.

A thread's turns will be runs; until the thread pins `agent_version`, each turn uses the
agent's current version. `last_activity_at` orders the list (newest activity first) and
moves when a turn starts, so the list shows the conversations in use at the top.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from agentkeep.db.base import Base, PortableJSON, Timestamps, UUIDPrimaryKey, utcnow

THREAD_TITLE_MAX = 200
# The serialized JSON of a thread's metadata, in bytes (UTF-8, compact separators).
THREAD_METADATA_MAX_BYTES = 8192


class Thread(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "threads"
    __table_args__ = (
        Index("ix_threads_org_id_last_activity_at", "org_id", "last_activity_at", "id"),
        Index("ix_threads_agent_id", "agent_id"),
    )

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    agent_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    # None: every turn uses the agent's current version.
    agent_version: Mapped[int | None]
    title: Mapped[str] = mapped_column(String(THREAD_TITLE_MAX), default="")
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", PortableJSON, default=dict)
    # The member the thread belongs to; for a thread an API key started, the key's creator.
    created_by_user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_by_api_key_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("api_keys.id", ondelete="SET NULL")
    )
    last_activity_at: Mapped[datetime] = mapped_column(default=utcnow)
