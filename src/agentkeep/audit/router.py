"""GET /api/audit-logs: the organization's audit trail (every record for superusers)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from agentkeep.audit.schemas import AuditLogFilter, AuditLogPage
from agentkeep.audit.service import list_records
from agentkeep.auth.dependencies import Principal
from agentkeep.db.session import SessionDep
from agentkeep.rbac.dependencies import require
from agentkeep.rbac.permissions import Permission

router = APIRouter(prefix="/api/audit-logs", tags=["audit"])

AuditReader = Annotated[Principal, Depends(require(Permission.AUDIT_READ))]


@router.get("", response_model=AuditLogPage)
async def list_audit_logs(
    reader: AuditReader,
    filters: Annotated[AuditLogFilter, Query()],
    session: SessionDep,
) -> AuditLogPage:
    """List audit records of the current organization, newest first, filtered and
    cursor-paginated (audit:read); a superuser's login session sees every record."""
    if not reader.is_superuser:
        # The organization filter is forced, never taken from the caller.
        filters = filters.model_copy(update={"org_id": reader.org_id})
    return await list_records(session, filters)
