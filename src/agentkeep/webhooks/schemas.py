"""Bodies of /api/orgs/{org_id}/webhooks. The signing secret appears once: in the answer to
the create (and to a rotation), never again."""

from __future__ import annotations

import uuid
from datetime import datetime
from ipaddress import ip_address
from typing import Annotated, Any, Literal

import httpx
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from agentkeep.pagination import DEFAULT_LIMIT, MAX_LIMIT, CursorParam
from agentkeep.tools.netguard import METADATA_HOSTNAMES, normalise_host, refusal_reason
from agentkeep.webhooks.events import EventType
from agentkeep.webhooks.models import WEBHOOK_DESCRIPTION_MAX, WEBHOOK_URL_MAX

DeliveryStatus = Literal["pending", "succeeded", "failed"]


def check_webhook_url(raw: str) -> str:
    """An absolute http(s) URL without credentials or fragment, whose host is not a metadata,
    unspecified or multicast target. Plain http and private addresses: the service decides
    (ENVIRONMENT, WEBHOOK_ALLOWED_NETWORKS)."""
    try:
        url = httpx.URL(raw.strip())
    except (httpx.InvalidURL, TypeError, ValueError):
        raise PydanticCustomError("invalid_url", "is not a URL") from None
    if url.scheme not in ("http", "https") or not url.is_absolute_url or not url.host:
        raise PydanticCustomError("invalid_url", "must be an absolute https:// URL")
    if url.userinfo:
        raise PydanticCustomError("invalid_url", "must not contain credentials")
    if url.fragment or "#" in raw:
        raise PydanticCustomError("invalid_url", "must not have a fragment")
    host = normalise_host(url.host)
    try:
        literal = ip_address(host)
    except ValueError:
        literal = None
    if host in METADATA_HOSTNAMES or (
        literal is not None and (reason := refusal_reason(literal)) is not None and not reason[1]
    ):
        raise PydanticCustomError("invalid_url", "names a metadata, unspecified or multicast address")
    return str(url)


def _distinct(events: list[EventType]) -> list[EventType]:
    return list(dict.fromkeys(events))


WebhookUrl = Annotated[
    str, Field(min_length=8, max_length=WEBHOOK_URL_MAX), AfterValidator(check_webhook_url)
]
Events = Annotated[
    list[EventType],
    Field(min_length=1, max_length=len(EventType), description="The events sent to this webhook."),
    AfterValidator(_distinct),
]
Description = Annotated[str, Field(max_length=WEBHOOK_DESCRIPTION_MAX)]


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: WebhookUrl = Field(description="Where events are POSTed, e.g. https://hooks.example.com/agentkeep.")
    events: Events
    description: Description = ""
    include_content: bool = Field(
        default=False, description="Run events carry the run's output text (off: ids and statuses only)."
    )
    enabled: bool = True


class WebhookUpdate(BaseModel):
    """Change some fields; enabling a webhook the system disabled resets its failure count."""

    model_config = ConfigDict(extra="forbid")

    url: WebhookUrl | None = None
    events: Events | None = None
    description: Description | None = None
    include_content: bool | None = None
    enabled: bool | None = None


class WebhookRotate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    overlap_seconds: int | None = Field(
        default=None,
        ge=0,
        le=7 * 86_400,
        description="How long the old secret stays valid; default WEBHOOK_SECRET_OVERLAP_SECONDS.",
    )


class WebhookRead(BaseModel):
    id: uuid.UUID
    url: str
    description: str
    events: list[str]
    include_content: bool
    enabled: bool
    disabled_reason: str | None
    consecutive_failures: int
    previous_secret_expires_at: datetime | None = Field(
        description="Until then deliveries are also signed with the secret before the last rotation."
    )
    version: int
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class WebhookWithSecret(WebhookRead):
    secret: str = Field(description="The signing secret (whsec_...): shown this once, store it now.")


class WebhookPage(BaseModel):
    items: list[WebhookRead]
    next_cursor: str | None


class ListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: CursorParam | None = None


class DeliveryRead(BaseModel):
    id: uuid.UUID
    webhook_id: uuid.UUID
    message_id: str = Field(description="The `webhook-id` header: the same on every attempt and redelivery.")
    event_type: str
    payload: dict[str, Any]
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    response_status: int | None
    response_body: str | None = Field(description="The receiver's last answer, truncated to 1 KiB.")
    latency_ms: int | None
    error: str | None
    redelivery_of: uuid.UUID | None
    created_at: datetime


class DeliveryPage(BaseModel):
    items: list[DeliveryRead]
    next_cursor: str | None
