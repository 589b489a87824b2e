"""API shapes of audit records, the listing filters and a page of results."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from agentkeep.audit.actions import ActorType, AuditAction, AuditStatus
from agentkeep.pagination import DEFAULT_LIMIT, MAX_LIMIT, CursorParam


def _rfc3339_only(value: object) -> object:
    # pydantic reads a bare number as Unix time; the document promises a date-time string.
    if (isinstance(value, str) and not value[:4].isdigit()) or (isinstance(value, str) and value[4:5] != "-"):
        raise ValueError("must be an RFC 3339 date-time, e.g. 2025-01-31T00:00:00Z")
    return value


DateTimeParam = Annotated[datetime, BeforeValidator(_rfc3339_only)]


class AuditLogRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    chain: str
    sequence: int | None = Field(description="Position in the chain; null until sealed")
    timestamp: datetime
    user_id: uuid.UUID | None
    org_id: uuid.UUID | None
    actor_type: ActorType
    action: str
    resource_type: str | None
    resource_id: str | None
    status: AuditStatus
    details: dict[str, Any]
    ip_address: str | None
    user_agent: str | None
    request_id: str | None
    prev_hash: str | None
    hash: str | None


class AuditLogPage(BaseModel):
    items: list[AuditLogRead]
    next_cursor: str | None


class AuditLogFilter(BaseModel):
    """Query parameters of the listing; every filter is optional and they combine with AND."""

    model_config = ConfigDict(extra="forbid")

    user_id: uuid.UUID | None = None
    org_id: uuid.UUID | None = None
    action: AuditAction | None = None
    resource_type: str | None = Field(default=None, max_length=64)
    resource_id: str | None = Field(default=None, max_length=128)
    status: AuditStatus | None = None
    ip_address: str | None = Field(default=None, max_length=45)
    since: DateTimeParam | None = Field(default=None, description="Inclusive lower bound on timestamp")
    until: DateTimeParam | None = Field(default=None, description="Exclusive upper bound on timestamp")
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: CursorParam | None = None
