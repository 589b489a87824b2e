"""Bodies of the instance administration endpoints under /api/users."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from agentkeep.pagination import DEFAULT_LIMIT, MAX_LIMIT, CursorParam


class UserRead(BaseModel):
    """A user account as every endpoint shows it (never the password hash)."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    username: str
    email: str
    is_active: bool
    is_superuser: bool
    created_at: datetime


class UserPage(BaseModel):
    items: list[UserRead]
    next_cursor: str | None


class UserListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: CursorParam | None = None


class SuperuserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    is_superuser: bool
