"""Runs and their append-only events.

The runs table is the source of truth for execution: status, attempt count, the lease
(owner, expiry, heartbeat) a worker holds while it executes, and a cancellation request.
Events are numbered per run (`seq`, from 1) and never updated or deleted.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from agentkeep.db.base import Base, PortableJSON, UUIDPrimaryKey, utcnow

RUN_INPUT_MAX = 100_000
RUN_STATUS_MAX = 16
STOP_REASON_MAX = 32
LEASE_OWNER_MAX = 128
EVENT_KIND_MAX = 32


class Run(UUIDPrimaryKey, Base):
    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_org_id_created_at", "org_id", "created_at", "id"),
        Index("ix_runs_agent_id_created_at", "agent_id", "created_at"),
        Index("ix_runs_status_lease_expires_at", "status", "lease_expires_at"),
        # A thread's turns, in order; a turn number is taken once per thread.
        Index("ix_runs_thread_id_thread_turn", "thread_id", "thread_turn", unique=True),
    )

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    agent_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    # The agent version this run executes (agent_versions.version of agent_id).
    agent_version: Mapped[int]
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    api_key_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))
    # A turn of a thread: its thread and its place in the thread (1, 2, ...). None for a
    # single-shot run. A deleted thread leaves its runs (usage, status, timings) without it.
    thread_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("threads.id", ondelete="SET NULL"))
    thread_turn: Mapped[int | None]
    input: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(RUN_STATUS_MAX), default="queued")
    stop_reason: Mapped[str | None] = mapped_column(String(STOP_REASON_MAX))
    output: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    # Usage, as reported by the model (requests made, input and output tokens).
    requests: Mapped[int] = mapped_column(default=0)
    input_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    # Execution state: attempts started, the lease of the worker executing it.
    attempts: Mapped[int] = mapped_column(default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(LEASE_OWNER_MAX))
    lease_expires_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    # Last time the run was handed to the queue (or vouched for by the runner holding it);
    # queued runs not dispatched recently that nothing holds are handed over again by the
    # recovery sweep.
    dispatched_at: Mapped[datetime | None]
    cancel_requested_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class RunEvent(Base):
    __tablename__ = "run_events"

    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(EVENT_KIND_MAX))
    data: Mapped[dict[str, Any]] = mapped_column(PortableJSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
