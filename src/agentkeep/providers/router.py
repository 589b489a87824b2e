"""HTTP endpoints under /api/orgs/{org_id}/providers: the API key goes in, never comes out."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status

from agentkeep.audit.service import AuditDep
from agentkeep.auth.dependencies import Principal
from agentkeep.db.session import SessionDep
from agentkeep.dependencies import SettingsDep
from agentkeep.providers.models import Provider
from agentkeep.providers.schemas import (
    ProviderCreate,
    ProviderListQuery,
    ProviderPage,
    ProviderRead,
    ProviderUpdate,
)
from agentkeep.providers.service import ProviderActor, ProviderService
from agentkeep.rbac.dependencies import require
from agentkeep.rbac.permissions import Permission
from agentkeep.security.secretbox import SecretBox

router = APIRouter(prefix="/api/orgs/{org_id}/providers", tags=["providers"])

OrgManager = Annotated[Principal, Depends(require(Permission.ORG_MANAGE))]


async def get_secretbox(request: Request) -> SecretBox | None:
    """The box the lifespan built from SECRETS_ENCRYPTION_KEYS (None when unset)."""
    box: SecretBox | None = request.app.state.secretbox
    return box


SecretBoxDep = Annotated["SecretBox | None", Depends(get_secretbox)]


async def get_provider_service(
    session: SessionDep, audit: AuditDep, secretbox: SecretBoxDep, settings: SettingsDep
) -> ProviderService:
    return ProviderService(session, audit, secretbox, settings.environment)


ProviderServiceDep = Annotated[ProviderService, Depends(get_provider_service)]
NAME_TAKEN: dict[int | str, dict[str, Any]] = {
    409: {"description": "The name is taken in this organization."}
}


def _actor(principal: Principal) -> ProviderActor:
    return ProviderActor(
        user_id=principal.user_id, org_id=principal.org_id, via_api_key=principal.kind == "api_key"
    )


def _read(service: ProviderService, provider: Provider) -> ProviderRead:
    return ProviderRead(
        id=provider.id,
        name=provider.name,
        kind="openai",
        base_url=provider.base_url,
        key_hint=provider.key_hint,
        key_status=service.status_of(provider),
        created_by=provider.created_by,
        created_at=provider.created_at,
        updated_at=provider.updated_at,
    )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ProviderRead, responses=NAME_TAKEN)
async def create_provider(
    org_id: uuid.UUID,
    body: ProviderCreate,
    principal: OrgManager,
    service: ProviderServiceDep,
    response: Response,
) -> ProviderRead:
    """Add an OpenAI-compatible provider; its API key is stored encrypted and never shown."""
    provider = await service.create(
        _actor(principal), org_id, body.name, body.kind, body.base_url, body.api_key
    )
    response.headers["Cache-Control"] = "no-store"
    return _read(service, provider)


@router.get("", response_model=ProviderPage)
async def list_providers(
    org_id: uuid.UUID,
    principal: OrgManager,
    query: Annotated[ProviderListQuery, Query()],
    service: ProviderServiceDep,
) -> ProviderPage:
    """The organization's providers, newest first (URL, key hint and key status; never the key)."""
    providers, next_cursor = await service.page(_actor(principal), org_id, query.limit, query.cursor)
    return ProviderPage(items=[_read(service, p) for p in providers], next_cursor=next_cursor)


@router.get("/{provider_id}", response_model=ProviderRead)
async def get_provider(
    org_id: uuid.UUID, provider_id: uuid.UUID, principal: OrgManager, service: ProviderServiceDep
) -> ProviderRead:
    """One provider of the organization (never its key)."""
    return _read(service, await service.get(_actor(principal), org_id, provider_id))


@router.patch("/{provider_id}", response_model=ProviderRead)
async def update_provider(
    org_id: uuid.UUID,
    provider_id: uuid.UUID,
    body: ProviderUpdate,
    principal: OrgManager,
    service: ProviderServiceDep,
) -> ProviderRead:
    """Rotate the API key, or move the provider to a new base_url together with its key."""
    provider = await service.update(_actor(principal), org_id, provider_id, body.base_url, body.api_key)
    return _read(service, provider)


@router.delete("/{provider_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_provider(
    org_id: uuid.UUID, provider_id: uuid.UUID, principal: OrgManager, service: ProviderServiceDep
) -> None:
    """Delete a provider and its stored key."""
    await service.delete(_actor(principal), org_id, provider_id)
