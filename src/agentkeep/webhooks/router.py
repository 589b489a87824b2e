"""HTTP endpoints under /api/orgs/{org_id}/webhooks: the signing secret is shown once."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from agentkeep.agents.service import entity_tag
from agentkeep.audit.service import AuditDep
from agentkeep.auth.dependencies import Principal
from agentkeep.db.session import SessionDep
from agentkeep.dependencies import SettingsDep
from agentkeep.mcp.router import ETAG, IdempotencyKeyHeader, IfMatchHeader
from agentkeep.providers.router import SecretBoxDep
from agentkeep.rbac.dependencies import require
from agentkeep.rbac.permissions import Permission
from agentkeep.webhooks.egress import WebhookEgress
from agentkeep.webhooks.models import Webhook, WebhookDelivery
from agentkeep.webhooks.schemas import (
    DeliveryPage,
    DeliveryRead,
    ListQuery,
    WebhookCreate,
    WebhookPage,
    WebhookRead,
    WebhookRotate,
    WebhookUpdate,
    WebhookWithSecret,
)
from agentkeep.webhooks.service import WebhookActor, WebhookService

router = APIRouter(prefix="/api/orgs/{org_id}/webhooks", tags=["webhooks"])

OrgManager = Annotated[Principal, Depends(require(Permission.ORG_MANAGE))]


async def get_webhook_service(
    session: SessionDep, audit: AuditDep, secretbox: SecretBoxDep, settings: SettingsDep
) -> WebhookService:
    return WebhookService(session, audit, secretbox, WebhookEgress.from_settings(settings), settings)


WebhookServiceDep = Annotated[WebhookService, Depends(get_webhook_service)]


def _actor(principal: Principal) -> WebhookActor:
    return WebhookActor(user_id=principal.user_id, org_id=principal.org_id, api_key_id=principal.api_key_id)


def _fields(webhook: Webhook) -> dict[str, object]:
    return {
        "id": webhook.id,
        "url": webhook.url,
        "description": webhook.description,
        "events": list(webhook.events),
        "include_content": webhook.include_content,
        "enabled": webhook.enabled,
        "disabled_reason": webhook.disabled_reason,
        "consecutive_failures": webhook.consecutive_failures,
        "previous_secret_expires_at": webhook.previous_secret_expires_at,
        "version": webhook.version,
        "created_by": webhook.created_by,
        "created_at": webhook.created_at,
        "updated_at": webhook.updated_at,
    }


def _read(webhook: Webhook) -> WebhookRead:
    return WebhookRead.model_validate(_fields(webhook))


def _tagged(webhook: Webhook, response: Response) -> None:
    response.headers["ETag"] = entity_tag(webhook.version)
    response.headers["Cache-Control"] = "no-store"


def _delivery(delivery: WebhookDelivery) -> DeliveryRead:
    return DeliveryRead.model_validate(delivery, from_attributes=True)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=WebhookWithSecret | WebhookRead,
    responses={
        201: {
            "headers": {
                **ETAG,
                "Location": {"description": "The created webhook.", "schema": {"type": "string"}},
            }
        },
        409: {"description": "The Idempotency-Key was used with another body."},
        422: {"description": "The URL is refused (see WEBHOOK_ALLOWED_NETWORKS)."},
    },
)
async def create_webhook(
    org_id: uuid.UUID,
    body: WebhookCreate,
    principal: OrgManager,
    service: WebhookServiceDep,
    response: Response,
    idempotency_key: IdempotencyKeyHeader = None,
) -> WebhookWithSecret | WebhookRead:
    """Register a webhook; the answer carries its signing secret, shown this once."""
    created = await service.create(_actor(principal), org_id, body, idempotency_key)
    response.headers["Location"] = f"/api/orgs/{org_id}/webhooks/{created.webhook.id}"
    _tagged(created.webhook, response)
    if created.replayed or created.secret is None:
        response.headers["Idempotent-Replayed"] = "true"
        return _read(created.webhook)
    return WebhookWithSecret.model_validate({**_fields(created.webhook), "secret": created.secret})


@router.get("", response_model=WebhookPage)
async def list_webhooks(
    org_id: uuid.UUID,
    principal: OrgManager,
    query: Annotated[ListQuery, Query()],
    service: WebhookServiceDep,
) -> WebhookPage:
    """The organization's webhooks, newest first (never their secrets)."""
    webhooks, next_cursor = await service.page(_actor(principal), org_id, query.limit, query.cursor)
    return WebhookPage(items=[_read(w) for w in webhooks], next_cursor=next_cursor)


@router.get("/{webhook_id}", response_model=WebhookRead, responses={200: {"headers": ETAG}})
async def get_webhook(
    org_id: uuid.UUID,
    webhook_id: uuid.UUID,
    principal: OrgManager,
    service: WebhookServiceDep,
    response: Response,
) -> WebhookRead:
    """One webhook of the organization; the ETag is its version."""
    webhook = await service.get(_actor(principal), org_id, webhook_id)
    _tagged(webhook, response)
    return _read(webhook)


@router.patch("/{webhook_id}", response_model=WebhookRead, responses={200: {"headers": ETAG}})
async def update_webhook(
    org_id: uuid.UUID,
    webhook_id: uuid.UUID,
    body: WebhookUpdate,
    principal: OrgManager,
    service: WebhookServiceDep,
    response: Response,
    if_match: IfMatchHeader = None,
) -> WebhookRead:
    """Change some fields (URL, events, description, include_content, enabled)."""
    webhook = await service.update(_actor(principal), org_id, webhook_id, body, if_match)
    _tagged(webhook, response)
    return _read(webhook)


@router.delete("/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_webhook(
    org_id: uuid.UUID,
    webhook_id: uuid.UUID,
    principal: OrgManager,
    service: WebhookServiceDep,
    if_match: IfMatchHeader = None,
) -> None:
    """Remove a webhook, its secrets and its delivery log; nothing more is sent to it."""
    await service.delete(_actor(principal), org_id, webhook_id, if_match)


@router.post("/{webhook_id}/rotate-secret", response_model=WebhookWithSecret)
async def rotate_webhook_secret(
    org_id: uuid.UUID,
    webhook_id: uuid.UUID,
    principal: OrgManager,
    service: WebhookServiceDep,
    response: Response,
    body: WebhookRotate | None = None,
) -> WebhookWithSecret:
    """A new signing secret, shown once; the old one still signs until previous_secret_expires_at."""
    webhook, secret = await service.rotate_secret(
        _actor(principal), org_id, webhook_id, body or WebhookRotate()
    )
    _tagged(webhook, response)
    return WebhookWithSecret.model_validate({**_fields(webhook), "secret": secret})


@router.post("/{webhook_id}/ping", status_code=status.HTTP_202_ACCEPTED, response_model=DeliveryRead)
async def ping_webhook(
    org_id: uuid.UUID, webhook_id: uuid.UUID, principal: OrgManager, service: WebhookServiceDep
) -> DeliveryRead:
    """Queue a signed `webhook.ping` event to the webhook; follow it in the delivery log."""
    return _delivery(await service.ping(_actor(principal), org_id, webhook_id))


@router.get("/{webhook_id}/deliveries", response_model=DeliveryPage)
async def list_webhook_deliveries(
    org_id: uuid.UUID,
    webhook_id: uuid.UUID,
    principal: OrgManager,
    query: Annotated[ListQuery, Query()],
    service: WebhookServiceDep,
) -> DeliveryPage:
    """The webhook's delivery log, newest first: status, attempts, the receiver's last answer."""
    items, next_cursor = await service.deliveries(
        _actor(principal), org_id, webhook_id, query.limit, query.cursor
    )
    return DeliveryPage(items=[_delivery(d) for d in items], next_cursor=next_cursor)


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/redeliver",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DeliveryRead,
)
async def redeliver_webhook_delivery(
    org_id: uuid.UUID,
    webhook_id: uuid.UUID,
    delivery_id: uuid.UUID,
    principal: OrgManager,
    service: WebhookServiceDep,
) -> DeliveryRead:
    """Send a delivery's event again (same body and `webhook-id`) as a new log entry."""
    return _delivery(await service.redeliver(_actor(principal), org_id, webhook_id, delivery_id))
