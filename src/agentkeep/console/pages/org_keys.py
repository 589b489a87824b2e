"""API keys: list, create (the secret is shown on the answer to the form, once: it is in no
URL, and the page is never stored), revoke. ApiKeyService as on /api/api-keys: scopes only
within what the creator holds (rbac.grants), and every change audited."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime, time
from typing import Annotated

from fastapi import Depends, Form, Query, Request
from starlette.responses import Response

from agentkeep.apikeys.router import ApiKeyServiceDep
from agentkeep.apikeys.schemas import ApiKeyCreate, ApiKeyRead
from agentkeep.auth.dependencies import Principal
from agentkeep.console.access import page_permission
from agentkeep.console.pages.org import org_page
from agentkeep.console.route import console_router
from agentkeep.console.templating import redirect
from agentkeep.errors import InvalidInput
from agentkeep.pagination import MAX_LIMIT, CursorParam
from agentkeep.rbac.permissions import PERMISSION_DESCRIPTIONS, Permission

router = console_router()

KeysManager = Annotated[Principal, Depends(page_permission(Permission.APIKEYS_MANAGE))]
_LIST_SEPARATORS = re.compile(r"[\s,]+")


def _org_id(principal: Principal) -> uuid.UUID:
    assert principal.org_id is not None  # page_permission passed: a member there
    return principal.org_id


def _expiry(day: str) -> datetime | None:
    """An expiry date from the form: the key works until that day begins (UTC)."""
    if not day:
        return None
    try:
        return datetime.combine(date.fromisoformat(day), time(0, 0), tzinfo=UTC)
    except ValueError:
        raise InvalidInput("Expires: a date such as 2030-01-31.") from None


async def _keys_context(
    principal: Principal, service: ApiKeyServiceDep, cursor: str | None
) -> dict[str, object]:
    keys, next_cursor = await service.page(_org_id(principal), MAX_LIMIT, cursor)
    return {
        "keys": [ApiKeyRead.model_validate(key) for key in keys],
        "next_cursor": next_cursor,
        # What a new key may carry: the scopes its creator holds (the service checks again).
        "scopes": [(p.value, PERMISSION_DESCRIPTIONS[p]) for p in Permission if principal.can(p)],
    }


@router.get("/org/api-keys")
async def keys_page(
    request: Request,
    principal: KeysManager,
    service: ApiKeyServiceDep,
    cursor: Annotated[CursorParam | None, Query()] = None,
) -> Response:
    context = await _keys_context(principal, service, cursor)
    return org_page(request, principal, "org/api_keys.html", {**context, "created": None})


@router.post("/org/api-keys")
async def create_key(
    request: Request,
    principal: KeysManager,
    service: ApiKeyServiceDep,
    name: Annotated[str, Form()],
    scopes: Annotated[list[str] | None, Form()] = None,
    expires_on: Annotated[str, Form(max_length=10)] = "",
    allowed_cidrs: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    cidrs = [part for part in _LIST_SEPARATORS.split(allowed_cidrs) if part]
    body = ApiKeyCreate.model_validate(
        {
            "name": name.strip(),
            "scopes": scopes or [],
            "expires_at": _expiry(expires_on),
            "allowed_cidrs": cidrs or None,
        }
    )
    key, secret = await service.create(
        principal.grantor, body.name, body.scopes, body.expires_at, body.allowed_cidrs
    )
    context = await _keys_context(principal, service, None)
    created = {"key": ApiKeyRead.model_validate(key), "secret": secret}
    return org_page(request, principal, "org/api_keys.html", {**context, "created": created}, status_code=201)


@router.post("/org/api-keys/{key_id}/revoke")
async def revoke_key(
    request: Request, key_id: uuid.UUID, principal: KeysManager, service: ApiKeyServiceDep
) -> Response:
    await service.revoke(principal.grantor, key_id)
    return redirect(request, "/org/api-keys?done=key-revoked")
