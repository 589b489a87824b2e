"""Threads: conversations with one agent, owned by the member (or API key) that started them.

A thread's turns are runs (`runs.thread_id`, numbered by `runs.thread_turn` from
`turn_count`); unless the thread pins `agent_version`, each turn uses the agent's current
version. `last_activity_at` orders the list (newest activity first) and moves when a turn
starts, so the list shows the conversations in use at the top.

`thread_messages` is the model-level history: every pydantic-ai `ModelMessage` (requests
with user prompts and tool returns, responses with text and tool calls) a turn exchanged
with the model, in pydantic-ai's own JSON form, numbered per thread. A turn's messages are
written once, with its outcome, by the runner that holds its lease.
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
MESSAGE_KIND_MAX = 16


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
    # Turns started so far: the next turn is number turn_count + 1.
    turn_count: Mapped[int] = mapped_column(default=0)


class ThreadMessage(Base):
    __tablename__ = "thread_messages"
    __table_args__ = (Index("ix_thread_messages_run_id", "run_id"),)

    thread_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("threads.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    # "request" or "response": pydantic-ai's `kind` of the message.
    kind: Mapped[str] = mapped_column(String(MESSAGE_KIND_MAX))
    # One ModelMessage as ModelMessagesTypeAdapter dumps it (mode="json").
    message: Mapped[dict[str, Any]] = mapped_column(PortableJSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
