"""HTTP endpoints under /api/api-keys: create (secret shown once), list, revoke."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from agentkeep.apikeys.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyListQuery, ApiKeyPage, ApiKeyRead
from agentkeep.apikeys.secret import ApiKeyHasher
from agentkeep.apikeys.service import ApiKeyService
from agentkeep.audit.service import AuditDep
from agentkeep.auth.dependencies import Principal, get_api_key_hasher
from agentkeep.db.session import SessionDep
from agentkeep.rbac.dependencies import require
from agentkeep.rbac.permissions import Permission

router = APIRouter(prefix="/api/api-keys", tags=["api-keys"])

KeysManager = Annotated[Principal, Depends(require(Permission.APIKEYS_MANAGE))]


async def get_api_key_service(
    session: SessionDep, audit: AuditDep, hasher: Annotated[ApiKeyHasher, Depends(get_api_key_hasher)]
) -> ApiKeyService:
    return ApiKeyService(session, hasher, audit)


ApiKeyServiceDep = Annotated[ApiKeyService, Depends(get_api_key_service)]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ApiKeyCreated)
async def create_api_key(
    body: ApiKeyCreate, principal: KeysManager, service: ApiKeyServiceDep, response: Response
) -> ApiKeyCreated:
    """Create a key for the current organization with scopes you hold; the secret is shown once."""
    key, secret = await service.create(
        principal.grantor, body.name, body.scopes, body.expires_at, body.allowed_cidrs
    )
    response.headers["Cache-Control"] = "no-store"
    return ApiKeyCreated(**ApiKeyRead.model_validate(key).model_dump(), key=secret)


@router.get("", response_model=ApiKeyPage)
async def list_api_keys(
    principal: KeysManager, query: Annotated[ApiKeyListQuery, Query()], service: ApiKeyServiceDep
) -> ApiKeyPage:
    """The current organization's keys, newest first, cursor-paginated (prefix, scopes,
    dates; never the secret or its hash)."""
    assert principal.org_id is not None  # require(...) passed: the caller is a member there
    keys, next_cursor = await service.page(principal.org_id, query.limit, query.cursor)
    return ApiKeyPage(items=[ApiKeyRead.model_validate(key) for key in keys], next_cursor=next_cursor)


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_api_key(key_id: uuid.UUID, principal: KeysManager, service: ApiKeyServiceDep) -> None:
    """Revoke a key of the current organization: it stops working on the next request."""
    await service.revoke(principal.grantor, key_id)
