"""GET /api/audit-logs. Not mounted yet: it is wired once authentication lands."""

from __future__ import annotations

from typing import Annotated, NoReturn

from fastapi import APIRouter, Depends, Query

from agentkeep.audit.schemas import AuditLogFilter, AuditLogPage
from agentkeep.audit.service import list_records
from agentkeep.db.session import SessionDep

router = APIRouter(prefix="/api/audit-logs", tags=["audit"])


def require_audit_reader() -> NoReturn:
    """The caller allowed to read the audit log (superusers; later the audit-read permission)."""
    raise NotImplementedError("wired to superuser auth when authentication lands")


AuditReader = Annotated[object, Depends(require_audit_reader)]


@router.get("", response_model=AuditLogPage)
async def list_audit_logs(
    _reader: AuditReader,
    filters: Annotated[AuditLogFilter, Query()],
    session: SessionDep,
) -> AuditLogPage:
    """List audit records, newest first, filtered and cursor-paginated."""
    return await list_records(session, filters)
