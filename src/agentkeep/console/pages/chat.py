"""Chat: an agent's threads, a conversation view, new threads and turns. Each action is the
/api/threads endpoint's service call (ThreadService, TurnService: same permissions,
RATE_LIMIT_RUNS, budget, audit); a turn's run is then followed live (pages/runs.py)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import Depends, Form, Request
from starlette.responses import Response

from agentkeep.agents.router import AgentServiceDep, actor_of
from agentkeep.auth.dependencies import Principal
from agentkeep.console.access import console_principal, page_permission
from agentkeep.console.route import console_router
from agentkeep.console.templating import redirect, render
from agentkeep.ratelimit.dependency import principal_key, rate_limit
from agentkeep.ratelimit.errors import RateLimitDecision
from agentkeep.ratelimit.rules import RuleName
from agentkeep.rbac.permissions import Permission
from agentkeep.runs.router import run_actor
from agentkeep.threads.router import ThreadServiceDep, TurnServiceDep, _viewer
from agentkeep.threads.schemas import ThreadCreate, TurnCreate
from agentkeep.threads.transcript import read_message
from agentkeep.worker.queue import RunQueueDep

router = console_router()

ChatReader = Annotated[Principal, Depends(page_permission(Permission.RUNS_READ))]
ChatWriter = Annotated[Principal, Depends(page_permission(Permission.RUNS_CREATE))]
# RATE_LIMIT_RUNS per user, counted after the permission check, as on the API.
RunsLimit = Annotated[
    RateLimitDecision,
    Depends(rate_limit(RuleName.RUNS, key=principal_key(console_principal, "limit_key"))),
]
LIST_SIZE = 50
MESSAGES_SHOWN = 200


@router.get("/chat")
async def chat_home(
    request: Request, principal: ChatReader, agents: AgentServiceDep, threads: ThreadServiceDep
) -> Response:
    rows: list[dict[str, Any]] = []
    if principal.can(Permission.AGENTS_READ):
        rows, _ = await agents.page(actor_of(principal), LIST_SIZE, None, status="active", name=None)
    recent, _ = await threads.page(_viewer(principal), LIST_SIZE, None, agent_id=None, created_by=None)
    return render(request, "chat/home.html", {"agents": rows, "threads": recent})


@router.get("/chat/{agent_id}")
async def agent_threads(
    request: Request,
    agent_id: uuid.UUID,
    principal: ChatReader,
    agents: AgentServiceDep,
    threads: ThreadServiceDep,
) -> Response:
    agent = await agents.get(actor_of(principal), agent_id)
    rows, _ = await threads.page(_viewer(principal), LIST_SIZE, None, agent_id=agent.id, created_by=None)
    return render(
        request,
        "chat/threads.html",
        {
            "agent": agent,
            "threads": rows,
            "can_chat": principal.can(Permission.RUNS_CREATE),
            "idempotency_key": str(uuid.uuid4()),
        },
    )


@router.post("/chat/{agent_id}/threads")
async def new_thread(
    request: Request,
    agent_id: uuid.UUID,
    principal: ChatWriter,
    threads: ThreadServiceDep,
    title: Annotated[str, Form(max_length=1000)] = "",
    idempotency_key: Annotated[str | None, Form(max_length=255)] = None,
) -> Response:
    body = ThreadCreate(agent_id=agent_id, title=title)
    thread, _ = await threads.create(actor_of(principal), _viewer(principal), body, idempotency_key or None)
    return redirect(request, f"/threads/{thread.id}")


@router.get("/threads/{thread_id}")
async def conversation(
    request: Request,
    thread_id: uuid.UUID,
    principal: ChatReader,
    threads: ThreadServiceDep,
    agents: AgentServiceDep,
) -> Response:
    viewer = _viewer(principal)
    thread = await threads.get(viewer, thread_id)
    rows, _ = await threads.messages(viewer, thread.id, MESSAGES_SHOWN, None)
    agent = (
        await agents.get(actor_of(principal), thread.agent_id)
        if principal.can(Permission.AGENTS_READ)
        else None
    )
    return render(
        request,
        "chat/conversation.html",
        {
            "thread": thread,
            "agent": agent,
            "messages": [read_message(row) for row in rows],
            "can_chat": principal.can(Permission.RUNS_CREATE),
        },
    )


@router.post("/threads/{thread_id}/turns")
async def say(
    request: Request,
    thread_id: uuid.UUID,
    principal: ChatWriter,
    _limit: RunsLimit,
    turns: TurnServiceDep,
    queue: RunQueueDep,
    message: Annotated[str, Form()],
    idempotency_key: Annotated[str | None, Form(max_length=255)] = None,
) -> Response:
    body = TurnCreate(input=message)
    created = await turns.start(
        run_actor(principal), thread_id, body, queue=queue, idempotency_key=idempotency_key or None
    )
    return render(
        request,
        "chat/turn.html",
        {
            "run": created.run,
            "thread_id": thread_id,
            "message": body.input,
            "idempotency_key": str(uuid.uuid4()),
        },
    )
