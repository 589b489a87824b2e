"""MCP servers: one row per named server of an organization, its headers encrypted.

The header names are kept in clear (they are shown, so people can tell what is configured);
the names with their values are one encrypted JSON document. The discovered tools are cached
on the row, so every instance answers the same list until someone refreshes it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from agentkeep.db.base import Base, PortableJSON, Timestamps, UUIDPrimaryKey

MCP_SERVER_NAME_MAX = 100
MCP_URL_MAX = 2048
MCP_TRANSPORT_MAX = 32


class McpServer(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "mcp_servers"
    __table_args__ = (UniqueConstraint("org_id", "name", name="uq_mcp_servers_org_id_name"),)

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    name: Mapped[str] = mapped_column(String(MCP_SERVER_NAME_MAX))
    url: Mapped[str] = mapped_column(String(MCP_URL_MAX))
    transport: Mapped[str] = mapped_column(String(MCP_TRANSPORT_MAX))
    # Fernet token (SecretBox) of the headers as a JSON object; NULL when there are none.
    headers_ciphertext: Mapped[str | None] = mapped_column(Text)
    header_names: Mapped[list[str]] = mapped_column(PortableJSON, default=list)
    timeout_seconds: Mapped[float] = mapped_column(Float)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Counts changes: the ETag, and what a discovery compares before it writes its result.
    version: Mapped[int] = mapped_column(default=1)
    # [{"name", "description", "input_schema"}] as last discovered; NULL: never discovered.
    tools: Mapped[list[Any] | None] = mapped_column(PortableJSON)
    tools_discovered_at: Mapped[datetime | None]
