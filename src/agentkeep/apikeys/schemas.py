"""Bodies of /api/api-keys. The secret appears in exactly one: the create response."""

from __future__ import annotations

import ipaddress
import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from agentkeep.apikeys.models import API_KEY_NAME_MAX
from agentkeep.pagination import DEFAULT_LIMIT, MAX_LIMIT, CursorParam
from agentkeep.rbac.permissions import Permission

MAX_CIDRS = 32


def _network(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value.strip(), strict=False))
    except ValueError:
        raise ValueError("is not an IP address or CIDR range") from None


Cidr = Annotated[
    str,
    Field(min_length=2, max_length=49, json_schema_extra={"format": "cidr"}, examples=["203.0.113.0/24"]),
    AfterValidator(_network),
]


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=API_KEY_NAME_MAX)
    scopes: list[Permission] = Field(min_length=1, max_length=len(Permission))
    expires_at: datetime | None = None
    allowed_cidrs: list[Cidr] | None = Field(default=None, min_length=1, max_length=MAX_CIDRS)


class ApiKeyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    prefix: str
    scopes: list[Permission]
    allowed_cidrs: list[str] | None
    created_by: uuid.UUID
    parent_key_id: uuid.UUID | None = Field(
        description="The key that created this one; null when a user created it. Revoking a "
        "key revokes every key created through it."
    )
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyRead):
    key: str = Field(description="The secret: shown only in this response, never again.")


class ApiKeyPage(BaseModel):
    items: list[ApiKeyRead]
    next_cursor: str | None


class ApiKeyListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: CursorParam | None = None
