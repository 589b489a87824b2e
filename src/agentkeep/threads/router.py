"""HTTP endpoints under /api/threads: create (idempotent), list, read, change, delete; start a
turn; read the conversation."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response, status

from agentkeep.agents.router import IdempotencyKeyHeader, actor_of
from agentkeep.audit.service import AuditDep
from agentkeep.auth.dependencies import Principal
from agentkeep.db.session import SessionDep
from agentkeep.dependencies import SettingsDep
from agentkeep.rbac.dependencies import require
from agentkeep.rbac.permissions import Permission
from agentkeep.runs.router import LOCATION as RUN_LOCATION
from agentkeep.runs.router import RunsLimit, run_actor
from agentkeep.runs.schemas import RunRead
from agentkeep.threads.repository import Viewer
from agentkeep.threads.schemas import (
    MessageListQuery,
    ThreadCreate,
    ThreadListQuery,
    ThreadMessagePage,
    ThreadPage,
    ThreadRead,
    ThreadUpdate,
    TurnCreate,
)
from agentkeep.threads.service import ThreadService
from agentkeep.threads.transcript import read_message
from agentkeep.threads.turns import TurnService
from agentkeep.worker.queue import RunQueueDep

router = APIRouter(prefix="/api/threads", tags=["threads"])

# A thread is where runs (turns) will start, so the runs permissions guard it.
ThreadsRead = Annotated[Principal, Depends(require(Permission.RUNS_READ))]
ThreadsWrite = Annotated[Principal, Depends(require(Permission.RUNS_CREATE))]
LOCATION = {"Location": {"description": "The created thread.", "schema": {"type": "string"}}}
NOT_VISIBLE: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such thread, or one the caller may not see."}
}


async def get_thread_service(session: SessionDep, audit: AuditDep) -> ThreadService:
    return ThreadService(session, audit)


ThreadServiceDep = Annotated[ThreadService, Depends(get_thread_service)]


async def get_turn_service(session: SessionDep, audit: AuditDep, settings: SettingsDep) -> TurnService:
    return TurnService(session, audit, settings.org_monthly_token_budget)


TurnServiceDep = Annotated[TurnService, Depends(get_turn_service)]


def _viewer(principal: Principal) -> Viewer:
    assert principal.org_id is not None
    return Viewer(
        org_id=principal.org_id,
        user_id=principal.user_id,
        api_key_id=principal.api_key_id,
        read_all=principal.can(Permission.THREADS_READ_ALL),
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ThreadRead,
    responses={
        201: {"headers": LOCATION},
        404: {"description": "No such agent in the organization."},
        409: {"description": "The agent is archived, or the Idempotency-Key was used with another body."},
    },
)
async def create_thread(
    body: ThreadCreate,
    principal: ThreadsWrite,
    service: ThreadServiceDep,
    response: Response,
    idempotency_key: IdempotencyKeyHeader = None,
) -> ThreadRead:
    """Start a conversation with an agent. With `Idempotency-Key`, a retry answers the same thread."""
    thread, replayed = await service.create(actor_of(principal), _viewer(principal), body, idempotency_key)
    response.headers["Location"] = f"{router.prefix}/{thread.id}"
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return ThreadRead.model_validate(thread)


@router.get("", response_model=ThreadPage)
async def list_threads(
    principal: ThreadsRead, query: Annotated[ThreadListQuery, Query()], service: ThreadServiceDep
) -> ThreadPage:
    """The threads the caller may see, newest activity first; filters `agent_id`, `created_by`."""
    rows, next_cursor = await service.page(
        _viewer(principal), query.limit, query.cursor, agent_id=query.agent_id, created_by=query.created_by
    )
    items = [ThreadRead.model_validate(row) for row in rows]
    return ThreadPage(items=items, next_cursor=next_cursor)


@router.get("/{thread_id}", response_model=ThreadRead, responses=NOT_VISIBLE)
async def get_thread(thread_id: uuid.UUID, principal: ThreadsRead, service: ThreadServiceDep) -> ThreadRead:
    """One thread the caller may see."""
    return ThreadRead.model_validate(await service.get(_viewer(principal), thread_id))


@router.patch("/{thread_id}", response_model=ThreadRead, responses=NOT_VISIBLE)
async def update_thread(
    thread_id: uuid.UUID, body: ThreadUpdate, principal: ThreadsWrite, service: ThreadServiceDep
) -> ThreadRead:
    """Change the title or replace the metadata."""
    return ThreadRead.model_validate(await service.update(_viewer(principal), thread_id, body))


@router.delete("/{thread_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_VISIBLE)
async def delete_thread(thread_id: uuid.UUID, principal: ThreadsWrite, service: ThreadServiceDep) -> None:
    """Delete a thread; the audit trail keeps the fact."""
    await service.delete(actor_of(principal), _viewer(principal), thread_id)


@router.post(
    "/{thread_id}/runs",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RunRead,
    responses={
        202: {"headers": RUN_LOCATION},
        404: {"description": "No such thread, or one the caller may not see."},
        409: {
            "description": (
                "A turn is in progress (multitask `reject`), the agent is archived or disabled, "
                "or the Idempotency-Key was used with another body."
            )
        },
        429: {"description": "A rate limit or the organization's monthly token budget is reached."},
    },
)
async def start_turn(
    thread_id: uuid.UUID,
    body: TurnCreate,
    principal: ThreadsWrite,
    _limit: RunsLimit,
    service: TurnServiceDep,
    queue: RunQueueDep,
    response: Response,
    idempotency_key: IdempotencyKeyHeader = None,
) -> RunRead:
    """Say something in the thread: queue a run of its agent that sees the conversation so far.
    Follow it at `Location` like any run; `multitask` decides what happens while another turn
    is unfinished."""
    created = await service.start(
        run_actor(principal), thread_id, body, queue=queue, idempotency_key=idempotency_key
    )
    if created.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = f"/api/runs/{created.run.id}"
    return RunRead.from_run(created.run)


@router.get("/{thread_id}/messages", response_model=ThreadMessagePage, responses=NOT_VISIBLE)
async def list_messages(
    thread_id: uuid.UUID,
    principal: ThreadsRead,
    query: Annotated[MessageListQuery, Query()],
    service: ThreadServiceDep,
) -> ThreadMessagePage:
    """The conversation, oldest first: user messages, the assistant's answers and tool calls,
    and tool results, each with its turn's run id. A turn's messages appear when it ends."""
    rows, next_cursor = await service.messages(_viewer(principal), thread_id, query.limit, query.cursor)
    return ThreadMessagePage(items=[read_message(row) for row in rows], next_cursor=next_cursor)
