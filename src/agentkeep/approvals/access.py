"""Who may decide a run's tool calls: the roles its agent version lists as `approvers`
(default: the roles holding `runs:approve`), so an agent narrows or widens the default.
An API key must also carry the `runs:approve` scope. A refusal is the usual 403 problem
naming `runs:approve`, audited as `permission_denied`."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from agentkeep.approvals.repository import approvers_of_run
from agentkeep.auth.dependencies import Principal
from agentkeep.rbac.dependencies import PermissionCheck, RequirePermission
from agentkeep.rbac.permissions import Permission


class RunApprovalCheck(PermissionCheck):
    """`runs:approve`, with the role list taken from the run's agent."""

    def __init__(self) -> None:
        super().__init__(Permission.RUNS_APPROVE)

    async def check(self, request: Request, principal: Principal, session: AsyncSession) -> Principal:
        scoped = principal.scopes is None or self.permission in principal.scopes
        approvers = None
        if principal.org_id is not None and principal.role is not None and scoped:
            try:
                run_id = uuid.UUID(str(request.path_params.get("run_id")))
            except ValueError:
                run_id = None
            if run_id is not None:
                approvers = await approvers_of_run(session, principal.org_id, run_id)
        if approvers is None:
            # No such run here (the route answers 404 to those who hold the permission).
            if principal.can(self.permission):
                return principal
            raise await self.denial(request, principal, session)
        assert principal.role is not None
        if principal.role.value in approvers:
            return principal
        raise await self.denial(
            request,
            principal,
            session,
            "Deciding this run's tool calls requires the 'runs:approve' permission, which its agent "
            f"grants to: {', '.join(approvers)}.",
        )


class RequireRunApproval(RunApprovalCheck, RequirePermission):
    """`require(Permission.RUNS_APPROVE)`, with the role list taken from the run's agent."""


RunApprover = Annotated[Principal, Depends(RequireRunApproval())]
