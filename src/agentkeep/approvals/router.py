"""HTTP endpoints under /api/runs/{run_id}/approvals: what a paused run waits on, and decisions."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Response

from agentkeep.approvals.access import RunApprover
from agentkeep.approvals.schemas import ApprovalDecisions, RunApprovalsRead
from agentkeep.approvals.service import ApprovalService
from agentkeep.audit.service import AuditDep
from agentkeep.auth.dependencies import Principal
from agentkeep.db.session import SessionDep
from agentkeep.rbac.dependencies import require
from agentkeep.rbac.permissions import Permission
from agentkeep.runs.router import run_actor
from agentkeep.worker.queue import RunQueueDep

router = APIRouter(prefix="/api/runs/{run_id}/approvals", tags=["approvals"])

RunsReader = Annotated[Principal, Depends(require(Permission.RUNS_READ))]


async def get_approval_service(session: SessionDep, audit: AuditDep) -> ApprovalService:
    return ApprovalService(session, audit)


ApprovalServiceDep = Annotated[ApprovalService, Depends(get_approval_service)]


@router.get("", response_model=RunApprovalsRead)
async def get_run_approvals(
    run_id: uuid.UUID, principal: RunsReader, service: ApprovalServiceDep
) -> RunApprovalsRead:
    """The tool calls the run asked approval for, decided or pending, and its deadline."""
    return await service.read(run_actor(principal), run_id)


@router.post(
    "",
    response_model=RunApprovalsRead,
    responses={
        200: {
            "description": "Recorded; `state` is `decided` once every pending call is, and the run resumes."
        },
        409: {"description": "The run is not waiting for approval, or a call was already decided."},
        422: {"description": "A tool_call_id the run does not wait on."},
    },
)
async def decide_run_approvals(
    run_id: uuid.UUID,
    body: ApprovalDecisions,
    principal: RunApprover,
    service: ApprovalServiceDep,
    queue: RunQueueDep,
    response: Response,
) -> RunApprovalsRead:
    """Approve or deny some or all of the tool calls a `requires_action` run waits on (`runs:approve`,
    roles per the agent's `approvers`). The run resumes, on any worker, when all are decided."""
    decided = await service.decide(run_actor(principal), run_id, body.decisions, queue)
    response.headers["Location"] = f"/api/runs/{run_id}"
    return decided.view
