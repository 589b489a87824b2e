"""HTTP endpoints under /api/threads: create (idempotent), list, read, change, delete."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response, status

from agentkeep.agents.router import IdempotencyKeyHeader, actor_of
from agentkeep.audit.service import AuditDep
from agentkeep.auth.dependencies import Principal
from agentkeep.db.session import SessionDep
from agentkeep.rbac.dependencies import require
from agentkeep.rbac.permissions import Permission
from agentkeep.threads.repository import Viewer
from agentkeep.threads.schemas import ThreadCreate, ThreadListQuery, ThreadPage, ThreadRead, ThreadUpdate
from agentkeep.threads.service import ThreadService

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
    threads, next_cursor = await service.page(
        _viewer(principal), query.limit, query.cursor, agent_id=query.agent_id, created_by=query.created_by
    )
    items = [ThreadRead.model_validate(thread) for thread in threads]
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
