"""What a run waiting for approval keeps, so that any worker can resume it later.

`run_approvals` holds one row per run that ever paused: the messages it exchanged with the
model up to the pause (pydantic-ai's own serialization), the usage and steps so far, the
deadline, and where it stands (`waiting` for decisions, `decided`: every call decided, the
run queued to resume). `run_approval_calls` holds each call that asked for approval, with
its decision, who made it, why and when. A run that pauses again reuses its row (the next
`round`); the calls of earlier rounds stay.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from agentkeep.db.base import Base, PortableJSON, utcnow

TOOL_CALL_ID_MAX = 200
TOOL_NAME_MAX = 240
REASON_MAX = 1000
APPROVAL_STATE_MAX = 16


class RunApproval(Base):
    __tablename__ = "run_approvals"
    __table_args__ = (Index("ix_run_approvals_state_deadline", "state", "deadline"),)

    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    # "waiting" for decisions, "decided" (the run is queued to resume from here), "expired".
    state: Mapped[str] = mapped_column(String(APPROVAL_STATE_MAX))
    round: Mapped[int]
    # pydantic-ai ModelMessagesTypeAdapter JSON of every message up to the pause.
    messages: Mapped[list[Any]] = mapped_column(PortableJSON)
    # Usage and model steps of the run up to the pause (limits and budgets count across it).
    requests: Mapped[int]
    input_tokens: Mapped[int] = mapped_column(BigInteger)
    output_tokens: Mapped[int] = mapped_column(BigInteger)
    steps: Mapped[int]
    paused_at: Mapped[datetime]
    deadline: Mapped[datetime]


class RunApprovalCall(Base):
    __tablename__ = "run_approval_calls"

    run_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("run_approvals.run_id", ondelete="CASCADE"), primary_key=True
    )
    tool_call_id: Mapped[str] = mapped_column(String(TOOL_CALL_ID_MAX), primary_key=True)
    round: Mapped[int]
    # The tool as the agent names it (`mcp:<server>/<tool>`, `http_get`), and its arguments.
    tool: Mapped[str] = mapped_column(String(TOOL_NAME_MAX))
    args: Mapped[Any] = mapped_column(PortableJSON)
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    # "approve" | "deny", NULL while pending.
    decision: Mapped[str | None] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    decided_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    decided_by_key: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))
    decided_at: Mapped[datetime | None]
