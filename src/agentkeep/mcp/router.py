"""HTTP endpoints under /api/orgs/{org_id}/mcp-servers: headers go in, only their names come out."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Response, status
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agentkeep.agents.service import entity_tag
from agentkeep.audit.service import AuditDep
from agentkeep.auth.dependencies import Principal
from agentkeep.db.session import SessionDep, get_sessionmaker
from agentkeep.dependencies import SettingsDep
from agentkeep.idempotency.models import IDEMPOTENCY_KEY_MAX, IDEMPOTENCY_KEY_PATTERN
from agentkeep.mcp.catalog import McpToolCatalog
from agentkeep.mcp.connect import McpEgress
from agentkeep.mcp.models import McpServer
from agentkeep.mcp.schemas import (
    McpServerCreate,
    McpServerListQuery,
    McpServerPage,
    McpServerRead,
    McpServerUpdate,
    McpToolList,
    McpToolRead,
)
from agentkeep.mcp.service import McpActor, McpServerService, headers_status
from agentkeep.providers.router import SecretBoxDep
from agentkeep.rbac.dependencies import require
from agentkeep.rbac.permissions import Permission

router = APIRouter(prefix="/api/orgs/{org_id}/mcp-servers", tags=["mcp-servers"])

OrgManager = Annotated[Principal, Depends(require(Permission.ORG_MANAGE))]
IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=IDEMPOTENCY_KEY_MAX,
        description="Retry-safe create: the same key and body answer the same server.",
        json_schema_extra={"pattern": IDEMPOTENCY_KEY_PATTERN},
    ),
]
IfMatchHeader = Annotated[
    str | None,
    Header(alias="If-Match", max_length=1024, description='Apply only at this version, e.g. "3" (the ETag).'),
]
ETAG = {
    "ETag": {
        "description": 'The server\'s version, e.g. `"3"`; send it in If-Match.',
        "schema": {"type": "string"},
    }
}


async def get_mcp_egress(settings: SettingsDep) -> McpEgress:
    """The deployment's MCP connection policy (MCP_ALLOWED_NETWORKS, ENVIRONMENT)."""
    return McpEgress.from_settings(settings)


EgressDep = Annotated[McpEgress, Depends(get_mcp_egress)]


async def get_mcp_server_service(
    session: SessionDep, audit: AuditDep, secretbox: SecretBoxDep, egress: EgressDep
) -> McpServerService:
    return McpServerService(session, audit, secretbox, egress)


async def get_mcp_tool_catalog(
    sessionmaker: Annotated[async_sessionmaker[AsyncSession], Depends(get_sessionmaker)],
    secretbox: SecretBoxDep,
    egress: EgressDep,
) -> McpToolCatalog:
    return McpToolCatalog(sessionmaker, secretbox, egress)


McpServerServiceDep = Annotated[McpServerService, Depends(get_mcp_server_service)]
McpToolCatalogDep = Annotated[McpToolCatalog, Depends(get_mcp_tool_catalog)]


def _actor(principal: Principal) -> McpActor:
    return McpActor(user_id=principal.user_id, org_id=principal.org_id, api_key_id=principal.api_key_id)


def _read(service: McpServerService, server: McpServer) -> McpServerRead:
    return McpServerRead(
        id=server.id,
        name=server.name,
        url=server.url,
        transport="sse" if server.transport == "sse" else "streamable-http",
        header_names=list(server.header_names),
        headers_status=headers_status(service.secretbox, server),
        timeout_seconds=server.timeout_seconds,
        enabled=server.enabled,
        version=server.version,
        tools_discovered_at=server.tools_discovered_at,
        created_by=server.created_by,
        created_at=server.created_at,
        updated_at=server.updated_at,
    )


def _tagged(service: McpServerService, server: McpServer, response: Response) -> McpServerRead:
    response.headers["ETag"] = entity_tag(server.version)
    response.headers["Cache-Control"] = "no-store"
    return _read(service, server)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=McpServerRead,
    responses={
        201: {
            "headers": {
                **ETAG,
                "Location": {"description": "The created server.", "schema": {"type": "string"}},
            }
        },
        409: {"description": "The name is taken, or the Idempotency-Key was used with another body."},
    },
)
async def create_mcp_server(
    org_id: uuid.UUID,
    body: McpServerCreate,
    principal: OrgManager,
    service: McpServerServiceDep,
    response: Response,
    idempotency_key: IdempotencyKeyHeader = None,
) -> McpServerRead:
    """Register an MCP server; its headers are stored encrypted and never shown."""
    created = await service.create(_actor(principal), org_id, body, idempotency_key)
    response.headers["Location"] = f"/api/orgs/{org_id}/mcp-servers/{created.server.id}"
    if created.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return _tagged(service, created.server, response)


@router.get("", response_model=McpServerPage)
async def list_mcp_servers(
    org_id: uuid.UUID,
    principal: OrgManager,
    query: Annotated[McpServerListQuery, Query()],
    service: McpServerServiceDep,
) -> McpServerPage:
    """The organization's MCP servers, newest first (header names only, never their values)."""
    servers, next_cursor = await service.page(_actor(principal), org_id, query.limit, query.cursor)
    return McpServerPage(items=[_read(service, s) for s in servers], next_cursor=next_cursor)


@router.get("/{server_id}", response_model=McpServerRead, responses={200: {"headers": ETAG}})
async def get_mcp_server(
    org_id: uuid.UUID,
    server_id: uuid.UUID,
    principal: OrgManager,
    service: McpServerServiceDep,
    response: Response,
) -> McpServerRead:
    """One MCP server of the organization; the ETag is its version."""
    return _tagged(service, await service.get(_actor(principal), org_id, server_id), response)


@router.patch(
    "/{server_id}",
    response_model=McpServerRead,
    responses={
        200: {"headers": ETAG},
        409: {"description": "The name is taken in this organization."},
    },
)
async def update_mcp_server(
    org_id: uuid.UUID,
    server_id: uuid.UUID,
    body: McpServerUpdate,
    principal: OrgManager,
    service: McpServerServiceDep,
    response: Response,
    if_match: IfMatchHeader = None,
) -> McpServerRead:
    """Change some fields; `headers` replaces them all. A new URL, transport or headers drops the tools."""
    server = await service.update(_actor(principal), org_id, server_id, body, if_match)
    return _tagged(service, server, response)


@router.delete("/{server_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_mcp_server(
    org_id: uuid.UUID,
    server_id: uuid.UUID,
    principal: OrgManager,
    service: McpServerServiceDep,
    if_match: IfMatchHeader = None,
) -> None:
    """Remove an MCP server and its stored headers."""
    await service.delete(_actor(principal), org_id, server_id, if_match)


TOOL_FAILURES: dict[int | str, dict[str, Any]] = {
    409: {"description": "The server is disabled (and has no cached list, or a refresh was asked)."},
    422: {"description": "The server's address is refused by the network guard (see MCP_ALLOWED_NETWORKS)."},
    502: {"description": "The server could not be reached, or did not answer as an MCP server."},
    504: {"description": "The server did not answer within its timeout_seconds."},
}


@router.get("/{server_id}/tools", response_model=McpToolList, responses=TOOL_FAILURES)
async def list_mcp_server_tools(
    org_id: uuid.UUID,
    server_id: uuid.UUID,
    principal: OrgManager,
    catalog: McpToolCatalogDep,
    refresh: Annotated[
        bool, Query(description="Ask the server again instead of answering the cached list.")
    ] = False,
) -> McpToolList:
    """The server's tools (name, description, input schema), cached; discovered anew with `refresh=true`."""
    found = await catalog.tools(_actor(principal), org_id, server_id, refresh=refresh)
    return McpToolList(
        server_id=found.server_id,
        discovered_at=found.discovered_at,
        items=[
            McpToolRead(name=t.name, description=t.description, input_schema=t.input_schema)
            for t in found.tools
        ],
    )
