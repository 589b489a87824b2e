"""record(...): the one way an audit event is written.

`record` inserts inside the caller's transaction, so a change and its audit record commit
together or not at all. `record_failure` writes in its own short transaction, so the record
of a refused or failed attempt survives the request's rollback. A failure to write either
raises AuditUnavailable (503): the request's change is rolled back, never left unaudited.
Both store the record unsealed and take no lock; the sealer (sealing.py) chains it after
the commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Annotated, Any, TypedDict, Unpack

import structlog
from fastapi import Depends, Request
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agentkeep.audit.actions import ActorType, AuditAction, AuditStatus
from agentkeep.audit.chain import PendingRecord, RecordedEvent, insert_record
from agentkeep.audit.models import (
    GLOBAL_CHAIN,
    IP_MAX,
    REQUEST_ID_MAX,
    RESOURCE_ID_MAX,
    RESOURCE_TYPE_MAX,
    USER_AGENT_MAX,
)
from agentkeep.audit.redaction import UnserialisableDetail, clean_optional_text, sanitise_details
from agentkeep.audit.repository import list_audit_logs
from agentkeep.audit.schemas import AuditLogFilter, AuditLogPage, AuditLogRead
from agentkeep.context import RequestContext, request_context
from agentkeep.db.faults import classify
from agentkeep.db.session import SessionDep, after_transaction, sessionmaker_of
from agentkeep.errors import ServiceUnavailable
from agentkeep.observability.metrics import Metrics

logger = structlog.get_logger("agentkeep.audit")


# A database error, or the driver giving up (command timeout, lost connection).
WRITE_ERRORS = (SQLAlchemyError, TimeoutError, OSError)


class AuditUnavailable(ServiceUnavailable):
    type_slug = "audit-unavailable"
    title = "Audit log unavailable"

    @classmethod
    def caused_by(cls, exc: BaseException) -> AuditUnavailable:
        """The write failed on `exc`: a database outage tells the client when to retry."""
        fault = classify(exc)
        headers = {"Retry-After": str(fault.retry_after)} if fault is not None else None
        return cls("The audit record could not be written.", headers=headers)


class EventFields(TypedDict, total=False):
    """What an event may say besides its action (all optional)."""

    user_id: uuid.UUID | None
    org_id: uuid.UUID | None
    actor_type: ActorType | str
    resource_type: str | None
    resource_id: object | None
    status: AuditStatus | str
    details: Mapping[str, Any] | None
    chain: str


def build_pending(
    action: AuditAction | str, *, context: RequestContext, **fields: Unpack[EventFields]
) -> PendingRecord:
    """Validate and sanitise an event. Unknown names are programming errors (ValueError)."""
    try:
        cleaned = sanitise_details(fields.get("details"))
    except UnserialisableDetail as exc:
        raise AuditUnavailable("The audit record could not be written.") from exc
    return PendingRecord(
        chain=fields.get("chain", GLOBAL_CHAIN),
        user_id=fields.get("user_id"),
        org_id=fields.get("org_id"),
        actor_type=ActorType(fields.get("actor_type", ActorType.USER)).value,
        action=AuditAction(action).value,
        resource_type=clean_optional_text(fields.get("resource_type"), RESOURCE_TYPE_MAX),
        resource_id=clean_optional_text(fields.get("resource_id"), RESOURCE_ID_MAX),
        status=AuditStatus(fields.get("status", AuditStatus.SUCCESS)).value,
        details=cleaned,
        ip_address=clean_optional_text(context.ip_address, IP_MAX),
        user_agent=clean_optional_text(context.user_agent, USER_AGENT_MAX),
        request_id=clean_optional_text(context.request_id, REQUEST_ID_MAX),
    )


async def _insert(session: AsyncSession, pending: PendingRecord) -> RecordedEvent:
    try:
        recorded = await insert_record(session, pending)
    except WRITE_ERRORS as exc:
        # Only the exception type is logged: its text could carry the statement's values.
        logger.error("audit_write_failed", action=pending.action, error=type(exc).__name__)
        raise AuditUnavailable.caused_by(exc) from exc
    logger.debug("audit_recorded", action=pending.action, chain=recorded.chain)
    return recorded


async def record(
    session: AsyncSession,
    action: AuditAction | str,
    *,
    context: RequestContext,
    **fields: Unpack[EventFields],
) -> RecordedEvent:
    """Insert an event in the caller's transaction; call it after the change it describes.

    No lock is taken: the record is stored unsealed and the sealer chains it after the commit.
    """
    pending = build_pending(action, context=context, **fields)
    # The caller's own changes go first; their errors (a unique violation, say) stay theirs
    # instead of turning into AuditUnavailable.
    await session.flush()
    return await _insert(session, pending)


async def record_failure(
    sessionmaker: async_sessionmaker[AsyncSession],
    action: AuditAction | str,
    *,
    context: RequestContext,
    **fields: Unpack[EventFields],
) -> RecordedEvent:
    """Write an event in its own committed transaction, whatever happens to the request's.

    On SQLite never await it while the request's own transaction has written: that
    transaction holds the database write lock this one waits for (AuditService.failure
    defers it until the request's transaction has ended).
    """
    fields.setdefault("status", AuditStatus.FAILURE)
    pending = build_pending(action, context=context, **fields)
    try:
        async with sessionmaker() as session, session.begin():
            return await _insert(session, pending)
    except WRITE_ERRORS as exc:  # the commit itself failed
        logger.error("audit_write_failed", action=pending.action, error=type(exc).__name__)
        raise AuditUnavailable.caused_by(exc) from exc


class AuditService:
    """Bound to one request: `await audit.record(AuditAction.AGENT_CREATED, resource_id=...)`.

    `record` joins the request's transaction. `failure` is written after that transaction
    ends, in its own, so it survives the rollback of a failed request and never waits on a
    lock the request itself holds (the SQLite write lock).
    """

    def __init__(
        self,
        session: AsyncSession,
        sessionmaker: async_sessionmaker[AsyncSession],
        context: RequestContext,
        metrics: Metrics | None = None,
    ) -> None:
        self.session = session
        self.sessionmaker = sessionmaker
        self.context = context
        self.metrics = metrics

    async def record(self, action: AuditAction | str, **fields: Unpack[EventFields]) -> RecordedEvent:
        """In the request's transaction (use for changes); call it after the change."""
        try:
            recorded = await record(self.session, action, context=self.context, **fields)
        except AuditUnavailable:
            self._count_failure()
            raise
        self._count(str(action))
        return recorded

    def failure(self, action: AuditAction | str, **fields: Unpack[EventFields]) -> None:
        """Queue a refusal or failure; written once the request's transaction has ended."""
        fields.setdefault("status", AuditStatus.FAILURE)
        # Validate now, so a bad event is a bug in the caller and not a silent loss later.
        build_pending(action, context=self.context, **fields)

        async def write() -> None:
            try:
                await record_failure(self.sessionmaker, action, context=self.context, **fields)
            except AuditUnavailable:
                # The request has already failed and changed nothing; its answer stands.
                self._count_failure()
                return
            self._count(str(action))

        after_transaction(self.session, write)

    def _count(self, action: str) -> None:
        if self.metrics is not None:
            self.metrics.audit_records.labels(action).inc()

    def _count_failure(self) -> None:
        if self.metrics is not None:
            self.metrics.audit_failures.inc()


def audit_service_for(request: Request, session: AsyncSession) -> AuditService:
    """The audit service of `request`, whose records join `session`'s transaction."""
    metrics = request.app.state.metrics
    return AuditService(session, sessionmaker_of(request), request_context(request), metrics)


async def get_audit_service(request: Request, session: SessionDep) -> AuditService:
    # Collaborators are read directly, not declared: on the hot path each sub-dependency
    # costs FastAPI more than building them.
    return audit_service_for(request, session)


AuditDep = Annotated[AuditService, Depends(get_audit_service)]


async def list_records(session: AsyncSession, filters: AuditLogFilter) -> AuditLogPage:
    """A page of records matching `filters`, newest first."""
    rows, next_cursor = await list_audit_logs(session, filters)
    return AuditLogPage(items=[AuditLogRead.model_validate(row) for row in rows], next_cursor=next_cursor)
