"""GET /api/audit-logs: the audit trail, for administrators."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from agentkeep.audit.schemas import AuditLogFilter, AuditLogPage
from agentkeep.audit.service import list_records
from agentkeep.auth.dependencies import SuperuserPrincipal
from agentkeep.db.session import SessionDep

router = APIRouter(prefix="/api/audit-logs", tags=["audit"])


@router.get("", response_model=AuditLogPage)
async def list_audit_logs(
    _reader: SuperuserPrincipal,
    filters: Annotated[AuditLogFilter, Query()],
    session: SessionDep,
) -> AuditLogPage:
    """List audit records, newest first, filtered and cursor-paginated (administrators)."""
    return await list_records(session, filters)
