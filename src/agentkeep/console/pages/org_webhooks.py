"""Webhooks of the organization with their delivery log, through WebhookService as on
/api/orgs/{org_id}/webhooks (`org:manage`): add (the signing secret shown once, on the
answer to the form), delete, send a test ping, and read each webhook's deliveries."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Form, Query, Request
from starlette.responses import Response

from agentkeep.auth.dependencies import Principal
from agentkeep.console.access import page_permission
from agentkeep.console.pages.org import org_page
from agentkeep.console.pages.org_integrations import new_form_key
from agentkeep.console.route import console_router
from agentkeep.console.templating import redirect
from agentkeep.idempotency.service import validate_key
from agentkeep.pagination import MAX_LIMIT, CursorParam
from agentkeep.rbac.permissions import Permission
from agentkeep.webhooks.events import EventType
from agentkeep.webhooks.router import WebhookServiceDep
from agentkeep.webhooks.schemas import WebhookCreate
from agentkeep.webhooks.service import WebhookActor

router = console_router()

OrgManager = Annotated[Principal, Depends(page_permission(Permission.ORG_MANAGE))]
DELIVERIES_PAGE = 50


def _org_id(principal: Principal) -> uuid.UUID:
    assert principal.org_id is not None  # page_permission passed: a member there
    return principal.org_id


def _actor(principal: Principal) -> WebhookActor:
    return WebhookActor(user_id=principal.user_id, org_id=principal.org_id, api_key_id=None)


async def _list_context(principal: Principal, service: WebhookServiceDep) -> dict[str, object]:
    webhooks, _ = await service.page(_actor(principal), _org_id(principal), MAX_LIMIT, None)
    return {
        "webhooks": webhooks,
        "events": [event.value for event in EventType],
        "form_key": new_form_key(),
        "created": None,
    }


@router.get("/org/webhooks")
async def webhooks_page(request: Request, principal: OrgManager, service: WebhookServiceDep) -> Response:
    return org_page(request, principal, "org/webhooks.html", await _list_context(principal, service))


@router.post("/org/webhooks")
async def add_webhook(
    request: Request,
    principal: OrgManager,
    service: WebhookServiceDep,
    url: Annotated[str, Form()],
    events: Annotated[list[str] | None, Form()] = None,
    description: Annotated[str, Form()] = "",
    include_content: Annotated[bool, Form()] = False,
    idempotency_key: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    body = WebhookCreate.model_validate(
        {
            "url": url,
            "events": events or [],
            "description": description.strip(),
            "include_content": include_content,
        }
    )
    key = validate_key(idempotency_key) if idempotency_key else None
    created = await service.create(_actor(principal), _org_id(principal), body, key)
    context = await _list_context(principal, service)
    context["created"] = {"webhook": created.webhook, "secret": created.secret}
    return org_page(request, principal, "org/webhooks.html", context, status_code=201)


@router.post("/org/webhooks/{webhook_id}/delete")
async def delete_webhook(
    request: Request, webhook_id: uuid.UUID, principal: OrgManager, service: WebhookServiceDep
) -> Response:
    await service.delete(_actor(principal), _org_id(principal), webhook_id, None)
    return redirect(request, "/org/webhooks?done=webhook-deleted")


@router.post("/org/webhooks/{webhook_id}/ping")
async def ping_webhook(
    request: Request, webhook_id: uuid.UUID, principal: OrgManager, service: WebhookServiceDep
) -> Response:
    await service.ping(_actor(principal), _org_id(principal), webhook_id)
    return redirect(request, f"/org/webhooks/{webhook_id}?done=webhook-pinged")


@router.get("/org/webhooks/{webhook_id}")
async def webhook_deliveries(
    request: Request,
    webhook_id: uuid.UUID,
    principal: OrgManager,
    service: WebhookServiceDep,
    cursor: Annotated[CursorParam | None, Query()] = None,
) -> Response:
    webhook = await service.get(_actor(principal), _org_id(principal), webhook_id)
    deliveries, next_cursor = await service.deliveries(
        _actor(principal), _org_id(principal), webhook_id, DELIVERIES_PAGE, cursor
    )
    return org_page(
        request,
        principal,
        "org/webhook.html",
        {"webhook": webhook, "deliveries": deliveries, "next_cursor": next_cursor},
    )
