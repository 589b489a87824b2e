"""Agents and their immutable versions.

`agents` holds the current configuration; every change writes a new `agent_versions` row
with the whole configuration, so a run pins the exact version it started with. Deleting an
agent archives it (`archived_at`): its versions, runs and audit records stay.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from agentkeep.db.base import Base, PortableJSON, Timestamps, UUIDPrimaryKey, utcnow
from agentkeep.rbac.permissions import Permission, roles_with

AGENT_NAME_MAX = 100
AGENT_DESCRIPTION_MAX = 1000
AGENT_MODEL_MAX = 200
AGENT_STATUS_MAX = 16
SYSTEM_PROMPT_MAX = 20_000
# Defaults of the approval fields (agents/schemas.py validates them); runs of agent versions
# written before these fields existed read the same defaults.
DEFAULT_APPROVERS: tuple[str, ...] = tuple(role.value for role in roles_with(Permission.RUNS_APPROVE))
DEFAULT_APPROVAL_TIMEOUT_SECONDS = 3600
# The same defaults as the database writes them (migrations 0014 and 0017).
APPROVERS_SERVER_DEFAULT = "'" + json.dumps(list(DEFAULT_APPROVERS)) + "'"


class Agent(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "agents"
    __table_args__ = (
        # Names are unique among an organization's live agents; an archived name can be reused.
        Index(
            "uq_agents_org_id_name_live",
            "org_id",
            "name",
            unique=True,
            sqlite_where=text("archived_at IS NULL"),
            postgresql_where=text("archived_at IS NULL"),
        ),
        Index("ix_agents_org_id_created_at", "org_id", "created_at", "id"),
    )

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    name: Mapped[str] = mapped_column(String(AGENT_NAME_MAX))
    description: Mapped[str] = mapped_column(String(AGENT_DESCRIPTION_MAX), default="")
    model: Mapped[str] = mapped_column(String(AGENT_MODEL_MAX))
    system_prompt: Mapped[str] = mapped_column(Text, default="")
    # [{"name": ..., "settings": {...}}], validated by agentkeep.tools.registry.ToolConfig.
    tools: Mapped[list[Any]] = mapped_column(PortableJSON, default=list)
    # {"max_steps": int, "max_output_tokens": int, "timeout_seconds": int}
    limits: Mapped[dict[str, Any]] = mapped_column(PortableJSON, default=dict)
    status: Mapped[str] = mapped_column(String(AGENT_STATUS_MAX), default="active")
    # The roles that may approve the agent's tool calls, and how long a run waits for them.
    # The server defaults are for the previous release's instances during a rolling upgrade,
    # which insert agents without these columns (expand-then-contract, migration 0017).
    approvers: Mapped[list[Any]] = mapped_column(
        PortableJSON, default=lambda: list(DEFAULT_APPROVERS), server_default=text(APPROVERS_SERVER_DEFAULT)
    )
    approval_timeout_seconds: Mapped[int] = mapped_column(
        default=DEFAULT_APPROVAL_TIMEOUT_SECONDS, server_default=str(DEFAULT_APPROVAL_TIMEOUT_SECONDS)
    )
    version: Mapped[int] = mapped_column(default=1)
    archived_at: Mapped[datetime | None]


class AgentVersion(UUIDPrimaryKey, Base):
    """One configuration an agent has had; never changed once written."""

    __tablename__ = "agent_versions"
    __table_args__ = (UniqueConstraint("agent_id", "version", name="uq_agent_versions_agent_id_version"),)

    agent_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    version: Mapped[int]
    # The whole configuration of that version: name, description, model, system_prompt,
    # tools, limits, status, approvers, approval_timeout_seconds.
    config: Mapped[dict[str, Any]] = mapped_column(PortableJSON)
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
