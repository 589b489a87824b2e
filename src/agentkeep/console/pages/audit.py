"""The organization's audit log: the listing with filters, the chain's verification status
and an export, through the same code as GET /api/audit-logs and `agentkeep audit
verify/export` (audit/service.py, audit/verify.py, audit/export.py).

Who sees what is the API's rule: `audit:read` in the current organization, whose records
only are listed (a superuser's login session sees every record).
"""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response, StreamingResponse

from agentkeep.audit.actions import AuditAction, AuditStatus
from agentkeep.audit.export import ExportFormat, write_export
from agentkeep.audit.models import GLOBAL_CHAIN
from agentkeep.audit.repository import list_audit_logs
from agentkeep.audit.schemas import AuditLogFilter
from agentkeep.audit.service import list_records
from agentkeep.audit.verify import verify_chain
from agentkeep.auth.dependencies import Principal
from agentkeep.console.access import page_permission
from agentkeep.console.route import console_router, is_htmx
from agentkeep.console.templating import PAGE_HEADERS, render
from agentkeep.db.session import SessionDep, sessionmaker_of
from agentkeep.errors import InvalidInput
from agentkeep.orgs.router import OrgServiceDep
from agentkeep.pagination import MAX_LIMIT
from agentkeep.rbac.permissions import Permission

router = console_router()

AuditReader = Annotated[Principal, Depends(page_permission(Permission.AUDIT_READ))]
PAGE_SIZE = 50
# A verification walks the whole chain: one walk serves every page view for this long.
VERIFY_CACHE_SECONDS = 30.0


class AuditQuery(BaseModel):
    """The filter form as submitted: blank fields mean "any" (a GET form sends them all)."""

    model_config = ConfigDict(extra="forbid")

    actor: str = Field(default="", max_length=320)
    action: str = Field(default="", max_length=64)
    status: str = Field(default="", max_length=16)
    resource_type: str = Field(default="", max_length=64)
    resource_id: str = Field(default="", max_length=128)
    since: str = Field(default="", max_length=40)
    until: str = Field(default="", max_length=40)
    cursor: str = Field(default="", max_length=512)
    format: str = Field(default="", max_length=8)

    def shown(self) -> dict[str, str]:
        """The filters to keep in links (next page, export), without the cursor."""
        return {
            name: value
            for name, value in self.model_dump().items()
            if value and name not in ("cursor", "format")
        }


AuditQueryDep = Annotated[AuditQuery, Query()]


async def _actors(principal: Principal, orgs: OrgServiceDep) -> dict[uuid.UUID, str]:
    """Member ids to usernames, to show and to filter by name (members:read, which every
    audit reader holds; removed members show as ids)."""
    if principal.org_id is None or not principal.can(Permission.MEMBERS_READ):
        return {}
    rows = await orgs.members(principal.grantor, principal.org_id)
    return {row.user.id: row.user.username for row in rows}


def _actor_id(actor: str, names: dict[uuid.UUID, str]) -> uuid.UUID | None:
    if not actor:
        return None
    by_name = {name.lower(): user_id for user_id, name in names.items()}
    found = by_name.get(actor.strip().lower())
    if found is not None:
        return found
    try:
        return uuid.UUID(actor.strip())
    except ValueError:
        raise InvalidInput("Actor: a member's username or a user id.") from None


def filters_of(
    query: AuditQuery, principal: Principal, names: dict[uuid.UUID, str], limit: int
) -> AuditLogFilter:
    """The API's filter model (its validation and the forced organization)."""
    given: dict[str, Any] = {
        "user_id": _actor_id(query.actor, names),
        "action": query.action or None,
        "status": query.status or None,
        "resource_type": query.resource_type or None,
        "resource_id": query.resource_id or None,
        "since": query.since or None,
        "until": query.until or None,
        "cursor": query.cursor or None,
        "limit": limit,
    }
    filters = AuditLogFilter.model_validate(
        {name: value for name, value in given.items() if value is not None}
    )
    if not principal.is_superuser:
        # As on the API: the organization is forced, never taken from the caller.
        filters = filters.model_copy(update={"org_id": principal.org_id})
    return filters


@router.get("/audit")
async def audit_page(
    request: Request, reader: AuditReader, query: AuditQueryDep, session: SessionDep, orgs: OrgServiceDep
) -> Response:
    names = await _actors(reader, orgs)
    filters = filters_of(query, reader, names, PAGE_SIZE)
    found = await list_records(session, filters)
    entries = [
        {
            "record": item,
            "actor": names.get(item.user_id, str(item.user_id)) if item.user_id else item.actor_type.value,
            # Shown as text (escaped like any other): readable, not \u003c-encoded.
            "details": json.dumps(item.details, indent=1, ensure_ascii=False, sort_keys=True)
            if item.details
            else "",
        }
        for item in found.items
    ]
    return render(
        request,
        "audit/list.html",
        {
            "query": query,
            "entries": entries,
            "next_query": {**query.shown(), "cursor": found.next_cursor} if found.next_cursor else None,
            "export_query": query.shown(),
            "actions": [action.value for action in AuditAction],
            "statuses": [status.value for status in AuditStatus],
        },
    )


@dataclass(frozen=True, slots=True)
class ChainStatus:
    ok: bool
    checked_at: datetime
    summary: str  # the CLI's line; shown whole to a superuser only (it counts every tenant)


class VerifyCache:
    """The last verification of the chain, per app (see VERIFY_CACHE_SECONDS)."""

    def __init__(self) -> None:
        self.found: tuple[float, ChainStatus] | None = None


async def _chain_status(request: Request) -> ChainStatus:
    cache: VerifyCache | None = getattr(request.app.state, "console_verify", None)
    if cache is None:
        cache = request.app.state.console_verify = VerifyCache()
    now = time.monotonic()
    if cache.found is not None and now - cache.found[0] < VERIFY_CACHE_SECONDS:
        return cache.found[1]
    # A session of its own, as `agentkeep audit verify` has: the walk expunges as it goes.
    async with sessionmaker_of(request)() as session:
        result = await verify_chain(session, GLOBAL_CHAIN)
    status = ChainStatus(ok=result.ok, checked_at=datetime.now(UTC), summary=result.describe())
    cache.found = (now, status)
    return status


@router.get("/audit/verify")
async def audit_verify(request: Request, reader: AuditReader) -> Response:
    status = await _chain_status(request)
    context = {"chain": status, "show_summary": reader.is_superuser}
    template = "audit/verify.html" if is_htmx(request) else "audit/verify_page.html"
    return render(request, template, context)


async def _listed(rows: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    for row in rows:
        yield row


async def _exported(request: Request, filters: AuditLogFilter, fmt: ExportFormat) -> AsyncIterator[str]:
    """Every matching record, newest first, as `write_export` writes them (the CLI's columns,
    escaping and formula quoting), one keyset page of MAX_LIMIT at a time: constant memory.
    The body is sent after the request's session ended, so it reads in a session of its own."""
    page = filters.model_copy(update={"limit": MAX_LIMIT, "cursor": None})
    first = True
    async with request.app.state.read_sessionmaker() as session:
        while True:
            rows, cursor = await list_audit_logs(session, page)
            out = io.StringIO()
            await write_export(_listed(rows), out, fmt)
            text = out.getvalue()
            if fmt == "csv" and not first:
                text = text.split("\n", 1)[1]  # the header row, written once
            first = False
            yield text
            if cursor is None:
                return
            page = page.model_copy(update={"cursor": cursor})


@router.get("/audit/export")
async def audit_export(
    request: Request, reader: AuditReader, query: AuditQueryDep, orgs: OrgServiceDep
) -> Response:
    if query.format not in ("csv", "jsonl"):
        raise InvalidInput("Export format: csv or jsonl.")
    fmt: ExportFormat = "csv" if query.format == "csv" else "jsonl"
    filters = filters_of(query, reader, await _actors(reader, orgs), MAX_LIMIT)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    media = "text/csv" if fmt == "csv" else "application/jsonl"
    return StreamingResponse(
        _exported(request, filters, fmt),
        media_type=f"{media}; charset=utf-8",
        headers={
            **PAGE_HEADERS,
            "Content-Disposition": f'attachment; filename="audit-{stamp}.{fmt}"',
        },
    )
