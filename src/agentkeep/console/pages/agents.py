"""Agents: list, create, edit, versions with a diff between two, archive. Each action is the
/api/agents endpoint's AgentService call (same permission, idempotency, audit, webhooks)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Form, Request
from starlette.responses import Response

from agentkeep.agents.router import AgentServiceDep, actor_of
from agentkeep.agents.schemas import AgentCreate, AgentUpdate
from agentkeep.agents.service import entity_tag
from agentkeep.auth.dependencies import Principal
from agentkeep.console.access import page_permission
from agentkeep.console.forms import APPROVER_ROLES, agent_body, config_diff, tools_text
from agentkeep.console.route import console_router
from agentkeep.console.templating import redirect, render
from agentkeep.errors import InvalidInput
from agentkeep.rbac.permissions import Permission

router = console_router()

AgentsRead = Annotated[Principal, Depends(page_permission(Permission.AGENTS_READ))]
AgentsWrite = Annotated[Principal, Depends(page_permission(Permission.AGENTS_WRITE))]
PAGE_SIZE = 50
VERSIONS_SHOWN = 100
NEW_AGENT = {
    "name": "",
    "description": "",
    "model": "test",
    "system_prompt": "",
    "tools": [],
    "limits": {},
    "status": "active",
    "approvers": ["owner", "admin", "member"],
    "approval_timeout_seconds": 3600,
    "version": 0,
}


@router.get("/agents")
async def list_agents(
    request: Request, principal: AgentsRead, service: AgentServiceDep, status: str | None = None
) -> Response:
    chosen = status if status in {"active", "disabled"} else None
    rows, _ = await service.page(actor_of(principal), PAGE_SIZE, None, status=chosen, name=None)
    return render(
        request,
        "agents/list.html",
        {"agents": rows, "status": chosen, "can_write": principal.can(Permission.AGENTS_WRITE)},
    )


def _form_context(agent: dict[str, object]) -> dict[str, object]:
    return {
        "agent": agent,
        "tools_json": tools_text(agent["tools"]),  # type: ignore[arg-type]
        "roles": APPROVER_ROLES,
        "idempotency_key": str(uuid.uuid4()),
    }


@router.get("/agents/new")
async def new_agent(request: Request, principal: AgentsWrite) -> Response:
    return render(request, "agents/form.html", _form_context(NEW_AGENT))


@router.post("/agents")
async def create_agent(
    request: Request,
    principal: AgentsWrite,
    service: AgentServiceDep,
    idempotency_key: Annotated[str | None, Form(max_length=255)] = None,
) -> Response:
    body = AgentCreate.model_validate(agent_body(await request.form()))
    created = await service.create(actor_of(principal), body, idempotency_key or None)
    return redirect(request, f"/agents/{created.agent.id}")


@router.get("/agents/{agent_id}")
async def show_agent(
    request: Request,
    agent_id: uuid.UUID,
    principal: AgentsRead,
    service: AgentServiceDep,
    a: int | None = None,
    b: int | None = None,
) -> Response:
    actor = actor_of(principal)
    agent = await service.get(actor, agent_id)
    versions, _ = await service.versions(actor, agent_id, VERSIONS_SHOWN, None)
    by_number = {version.version: version for version in versions}
    newer = b if b is not None else agent.version
    older = a if a is not None else max(newer - 1, 1)
    diff = None
    if a is not None or b is not None or agent.version > 1:
        if older not in by_number or newer not in by_number:
            raise InvalidInput("Choose two versions of this agent to compare.")
        diff = config_diff(by_number[older].config, by_number[newer].config)
    return render(
        request,
        "agents/show.html",
        {
            "agent": agent,
            "tools_json": tools_text(agent.tools),
            "versions": versions,
            "older": older,
            "newer": newer,
            "diff": diff,
            "can_write": principal.can(Permission.AGENTS_WRITE),
            "can_chat": principal.can(Permission.RUNS_CREATE),
        },
    )


@router.get("/agents/{agent_id}/edit")
async def edit_agent(
    request: Request, agent_id: uuid.UUID, principal: AgentsWrite, service: AgentServiceDep
) -> Response:
    agent = await service.get(actor_of(principal), agent_id)
    fields = {name: getattr(agent, name) for name in NEW_AGENT}
    return render(request, "agents/form.html", {**_form_context(fields), "agent_id": agent.id})


@router.post("/agents/{agent_id}")
async def update_agent(
    request: Request,
    agent_id: uuid.UUID,
    principal: AgentsWrite,
    service: AgentServiceDep,
    version: Annotated[int, Form()],
) -> Response:
    body = AgentUpdate.model_validate(agent_body(await request.form()))
    # The version the form was filled from: a change made meanwhile is not overwritten (412).
    await service.update(actor_of(principal), agent_id, body, entity_tag(version))
    return redirect(request, f"/agents/{agent_id}")


@router.post("/agents/{agent_id}/archive")
async def archive_agent(
    request: Request,
    agent_id: uuid.UUID,
    principal: AgentsWrite,
    service: AgentServiceDep,
    version: Annotated[int, Form()],
) -> Response:
    await service.archive(actor_of(principal), agent_id, entity_tag(version))
    return redirect(request, "/agents")
