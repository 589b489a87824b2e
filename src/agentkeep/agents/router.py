"""HTTP endpoints under /api/agents: create (idempotent), list, read, change, archive, versions."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status

from agentkeep.agents.models import Agent
from agentkeep.agents.schemas import (
    AgentCreate,
    AgentListQuery,
    AgentPage,
    AgentRead,
    AgentUpdate,
    AgentVersionListQuery,
    AgentVersionPage,
    AgentVersionRead,
)
from agentkeep.agents.service import AgentActor, AgentService, agents_page, entity_tag
from agentkeep.audit.service import audit_service_for
from agentkeep.auth.dependencies import Principal
from agentkeep.db.session import SessionDep
from agentkeep.idempotency.models import IDEMPOTENCY_KEY_MAX, IDEMPOTENCY_KEY_PATTERN
from agentkeep.mcp.agent_check import McpToolCheck
from agentkeep.rbac.dependencies import require
from agentkeep.rbac.permissions import Permission
from agentkeep.responses import RowPage

router = APIRouter(prefix="/api/agents", tags=["agents"])

AgentsRead = Annotated[Principal, Depends(require(Permission.AGENTS_READ))]
AgentsWrite = Annotated[Principal, Depends(require(Permission.AGENTS_WRITE))]
IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=IDEMPOTENCY_KEY_MAX,
        description="Retry-safe create: the same key and body answer the same agent.",
        json_schema_extra={"pattern": IDEMPOTENCY_KEY_PATTERN},
    ),
]
IfMatchHeader = Annotated[
    str | None,
    Header(alias="If-Match", max_length=1024, description='Apply only at this version, e.g. "3" (the ETag).'),
]


async def get_agent_service(request: Request, session: SessionDep) -> AgentService:
    # The audit service and the MCP tool check are built here rather than declared: every
    # agents route, the list (the hottest read) included, would pay FastAPI for more
    # dependencies to resolve. The check only does work for agents that name MCP tools.
    return AgentService(session, audit_service_for(request, session), McpToolCheck.of_app(request.app))


AGENT_PAGE = RowPage(AgentRead)
AgentServiceDep = Annotated[AgentService, Depends(get_agent_service)]
ETAG = {
    "ETag": {
        "description": 'The agent\'s version, e.g. `"3"`; send it in If-Match.',
        "schema": {"type": "string"},
    }
}
LOCATION = {"Location": {"description": "The created agent.", "schema": {"type": "string"}}}
# An `mcp:` tool is checked against its server's tool list, asked for when none is cached.
MCP_ANSWERS: dict[int | str, dict[str, Any]] = {
    422: {"description": "Invalid, or an `mcp:` tool no enabled server of the organization offers."},
    502: {"description": "An MCP server had to be asked for its tools and did not answer as one."},
    504: {"description": "An MCP server had to be asked for its tools and did not answer in time."},
}


def actor_of(principal: Principal) -> AgentActor:
    assert principal.org_id is not None  # require(...) passed: the caller is a member there
    return AgentActor(user_id=principal.user_id, org_id=principal.org_id, api_key_id=principal.api_key_id)


def _read(agent: Agent, response: Response) -> AgentRead:
    response.headers["ETag"] = entity_tag(agent.version)
    return AgentRead.model_validate(agent)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=AgentRead,
    responses={
        201: {"headers": {**ETAG, **LOCATION}},
        409: {"description": "The name is taken, or the Idempotency-Key was used with another body."},
        **MCP_ANSWERS,
    },
)
async def create_agent(
    body: AgentCreate,
    principal: AgentsWrite,
    service: AgentServiceDep,
    response: Response,
    idempotency_key: IdempotencyKeyHeader = None,
) -> AgentRead:
    """Create an agent (version 1). With `Idempotency-Key`, a retry answers the same agent."""
    created = await service.create(actor_of(principal), body, idempotency_key)
    response.headers["Location"] = f"{router.prefix}/{created.agent.id}"
    if created.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return _read(created.agent, response)


@router.get("", response_model=AgentPage)
async def list_agents(
    principal: AgentsRead, query: Annotated[AgentListQuery, Query()], session: SessionDep
) -> Response:
    """The organization's agents, newest first, cursor-paginated; filters `status`, `name`."""
    # The session, not the service: the list needs none of what the service is built with.
    rows, next_cursor = await agents_page(
        session, actor_of(principal), query.limit, query.cursor, status=query.status, name=query.name
    )
    return AGENT_PAGE.response(rows, next_cursor)


@router.get("/{agent_id}", response_model=AgentRead, responses={200: {"headers": ETAG}})
async def get_agent(
    agent_id: uuid.UUID, principal: AgentsRead, service: AgentServiceDep, response: Response
) -> AgentRead:
    """One agent with its current configuration; the ETag is its version."""
    return _read(await service.get(actor_of(principal), agent_id), response)


@router.patch(
    "/{agent_id}",
    response_model=AgentRead,
    responses={
        200: {"headers": ETAG},
        409: {"description": "The name is taken, or the agent changed concurrently; read it again."},
        **MCP_ANSWERS,
    },
)
async def update_agent(
    agent_id: uuid.UUID,
    body: AgentUpdate,
    principal: AgentsWrite,
    service: AgentServiceDep,
    response: Response,
    if_match: IfMatchHeader = None,
) -> AgentRead:
    """Change some fields; a real change makes a new version. `If-Match` guards against lost updates."""
    return _read(await service.update(actor_of(principal), agent_id, body, if_match), response)


@router.delete("/{agent_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_agent(
    agent_id: uuid.UUID, principal: AgentsWrite, service: AgentServiceDep, if_match: IfMatchHeader = None
) -> None:
    """Archive an agent: gone from the API, its name free again; its versions and runs stay."""
    await service.archive(actor_of(principal), agent_id, if_match)


@router.get("/{agent_id}/versions", response_model=AgentVersionPage)
async def list_agent_versions(
    agent_id: uuid.UUID,
    principal: AgentsRead,
    query: Annotated[AgentVersionListQuery, Query()],
    service: AgentServiceDep,
) -> AgentVersionPage:
    """Every configuration the agent has had, newest version first, cursor-paginated."""
    versions, next_cursor = await service.versions(actor_of(principal), agent_id, query.limit, query.cursor)
    return AgentVersionPage(
        items=[AgentVersionRead.model_validate(version) for version in versions], next_cursor=next_cursor
    )
