"""Model providers and MCP servers of the organization: list, add, delete, through
ProviderService and McpServerService as on /api/orgs/{org_id}/providers and /mcp-servers
(`org:manage`; secrets are write-only: a provider's key and an MCP server's header values
go in and are never shown, only the key's last four characters and the header names)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Form, Request
from starlette.responses import Response

from agentkeep.auth.dependencies import Principal
from agentkeep.console.access import page_permission
from agentkeep.console.pages.org import org_page
from agentkeep.console.route import console_router
from agentkeep.console.templating import redirect
from agentkeep.idempotency.service import validate_key
from agentkeep.mcp.router import McpServerServiceDep
from agentkeep.mcp.schemas import McpServerCreate
from agentkeep.mcp.service import McpActor, headers_status
from agentkeep.pagination import MAX_LIMIT
from agentkeep.providers.router import ProviderServiceDep
from agentkeep.providers.schemas import ProviderCreate
from agentkeep.providers.service import ProviderActor
from agentkeep.rbac.permissions import Permission

router = console_router()

OrgManager = Annotated[Principal, Depends(page_permission(Permission.ORG_MANAGE))]


def _org_id(principal: Principal) -> uuid.UUID:
    assert principal.org_id is not None  # page_permission passed: a member there
    return principal.org_id


def _provider_actor(principal: Principal) -> ProviderActor:
    return ProviderActor(user_id=principal.user_id, org_id=principal.org_id, via_api_key=False)


def _mcp_actor(principal: Principal) -> McpActor:
    return McpActor(user_id=principal.user_id, org_id=principal.org_id, api_key_id=None)


def new_form_key() -> str:
    """A fresh Idempotency-Key for a create form: submitting the same form twice (a double
    click, a reload) creates once, as a client retrying with the same key does on the API."""
    return str(uuid.uuid4())


@router.get("/org/providers")
async def providers_page(request: Request, principal: OrgManager, service: ProviderServiceDep) -> Response:
    providers, _ = await service.page(_provider_actor(principal), _org_id(principal), MAX_LIMIT, None)
    rows = [{"provider": p, "key_status": service.status_of(p).value} for p in providers]
    return org_page(request, principal, "org/providers.html", {"providers": rows})


@router.post("/org/providers")
async def add_provider(
    request: Request,
    principal: OrgManager,
    service: ProviderServiceDep,
    name: Annotated[str, Form()],
    base_url: Annotated[str, Form()],
    api_key: Annotated[str, Form()],
) -> Response:
    body = ProviderCreate.model_validate({"name": name.strip(), "base_url": base_url, "api_key": api_key})
    await service.create(
        _provider_actor(principal), _org_id(principal), body.name, body.kind, body.base_url, body.api_key
    )
    return redirect(request, "/org/providers?done=provider-added")


@router.post("/org/providers/{provider_id}/delete")
async def delete_provider(
    request: Request, provider_id: uuid.UUID, principal: OrgManager, service: ProviderServiceDep
) -> Response:
    await service.delete(_provider_actor(principal), _org_id(principal), provider_id)
    return redirect(request, "/org/providers?done=provider-deleted")


@router.get("/org/mcp-servers")
async def mcp_page(request: Request, principal: OrgManager, service: McpServerServiceDep) -> Response:
    servers, _ = await service.page(_mcp_actor(principal), _org_id(principal), MAX_LIMIT, None)
    rows = [{"server": s, "headers_status": headers_status(service.secretbox, s)} for s in servers]
    return org_page(request, principal, "org/mcp_servers.html", {"servers": rows, "form_key": new_form_key()})


@router.post("/org/mcp-servers")
async def add_mcp_server(
    request: Request,
    principal: OrgManager,
    service: McpServerServiceDep,
    name: Annotated[str, Form()],
    url: Annotated[str, Form()],
    transport: Annotated[str, Form()] = "streamable-http",
    header_name: Annotated[str, Form(max_length=100)] = "",
    header_value: Annotated[str, Form(max_length=4096)] = "",
    timeout_seconds: Annotated[float, Form()] = 30.0,
    idempotency_key: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    headers = {header_name.strip(): header_value} if header_name.strip() else {}
    body = McpServerCreate.model_validate(
        {
            "name": name.strip(),
            "url": url,
            "transport": transport,
            "headers": headers,
            "timeout_seconds": timeout_seconds,
        }
    )
    key = validate_key(idempotency_key) if idempotency_key else None
    await service.create(_mcp_actor(principal), _org_id(principal), body, key)
    return redirect(request, "/org/mcp-servers?done=mcp-added")


@router.post("/org/mcp-servers/{server_id}/delete")
async def delete_mcp_server(
    request: Request, server_id: uuid.UUID, principal: OrgManager, service: McpServerServiceDep
) -> Response:
    await service.delete(_mcp_actor(principal), _org_id(principal), server_id, None)
    return redirect(request, "/org/mcp-servers?done=mcp-deleted")
