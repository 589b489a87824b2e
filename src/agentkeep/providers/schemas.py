"""Bodies of /api/orgs/{org_id}/providers. The API key is write-only: it is accepted in
create and update bodies and appears in no response."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from ipaddress import ip_address
from typing import Annotated, Literal

import httpx
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr

from agentkeep.pagination import DEFAULT_LIMIT, MAX_LIMIT, CursorParam
from agentkeep.providers.models import API_KEY_MAX, BASE_URL_MAX, PROVIDER_NAME_MAX
from agentkeep.tools.netguard import METADATA_HOSTNAMES, normalise_host, refusal_reason

ProviderKind = Literal["openai"]


def check_base_url(raw: str) -> str:
    """An absolute http(s) URL without credentials, query or fragment, whose host is not a
    metadata, unspecified or multicast target. Returned without a trailing slash.

    Whether plain http is acceptable depends on the environment; the service decides that.
    """
    try:
        url = httpx.URL(raw.strip())
    except (httpx.InvalidURL, TypeError, ValueError):
        raise ValueError("is not a URL") from None
    if url.scheme not in ("http", "https") or not url.is_absolute_url or not url.host:
        raise ValueError("must be an absolute https:// URL")
    if url.userinfo:
        raise ValueError("must not contain credentials; send the key as api_key")
    if url.query or url.fragment or "?" in raw or "#" in raw:
        raise ValueError("must not have a query or fragment")
    host = normalise_host(url.host)
    try:
        literal = ip_address(host)
    except ValueError:
        literal = None
    if host in METADATA_HOSTNAMES or (
        literal is not None and (reason := refusal_reason(literal)) is not None and not reason[1]
    ):
        raise ValueError("names a metadata, unspecified or multicast address")
    return str(url).rstrip("/")


BaseUrl = Annotated[str, Field(min_length=8, max_length=BASE_URL_MAX), AfterValidator(check_base_url)]
ProviderName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=PROVIDER_NAME_MAX,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="Unique in the organization; the provider named `default` is the one runs use.",
    ),
]
ApiKey = Annotated[SecretStr, Field(min_length=1, max_length=API_KEY_MAX)]


class ProviderCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: ProviderName
    kind: ProviderKind = "openai"
    base_url: BaseUrl = Field(description="OpenAI-compatible API root, e.g. https://api.openai.com/v1.")
    api_key: ApiKey = Field(description="Write-only: stored encrypted, never returned.")


class ProviderUpdate(BaseModel):
    """Rotate the key, or move the provider to another URL together with a key for it."""

    model_config = ConfigDict(extra="forbid")

    base_url: BaseUrl | None = None
    # Always required: the stored key must never be sent somewhere its writer did not
    # choose, so whoever points the provider at a new URL supplies the key for that URL.
    api_key: ApiKey


class KeyStatus(StrEnum):
    OK = "ok"
    # No configured SECRETS_ENCRYPTION_KEYS key decrypts the stored key.
    UNREADABLE = "unreadable"
    # SECRETS_ENCRYPTION_KEYS is unset on this instance.
    NO_ENCRYPTION_KEY = "no_encryption_key"


class ProviderRead(BaseModel):
    id: uuid.UUID
    name: str
    kind: ProviderKind
    base_url: str
    key_hint: str = Field(description="The key's last four characters (empty for short keys).")
    key_status: KeyStatus
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class ProviderPage(BaseModel):
    items: list[ProviderRead]
    next_cursor: str | None


class ProviderListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: CursorParam | None = None
