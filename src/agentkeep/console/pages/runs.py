"""Runs: the list with filters, a run's page (status, usage, timings, its events), the live
event stream the chat and the run page show, and approve/deny. Each is the /api/runs
endpoint's service call (RunService, ApprovalService, the API's event source)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Form, Header, Query, Request
from starlette.responses import Response, StreamingResponse

from agentkeep.approvals.access import RunApprovalCheck
from agentkeep.approvals.router import ApprovalServiceDep
from agentkeep.approvals.schemas import ApprovalDecisions
from agentkeep.auth.dependencies import Principal
from agentkeep.console.access import ConsolePrincipal, page_permission
from agentkeep.console.events import event_view, open_approvals
from agentkeep.console.route import console_router
from agentkeep.console.templating import PAGE_HEADERS, environment_of, render
from agentkeep.db.session import SessionDep, sessionmaker_of
from agentkeep.errors import InvalidInput
from agentkeep.rbac.permissions import Permission
from agentkeep.runs.repository import RunFilters, events_after
from agentkeep.runs.router import MAX_EVENT_SEQ, RunServiceDep, get_stream_timing, run_actor
from agentkeep.runs.schemas import RunRead
from agentkeep.runs.states import TERMINAL_STATUSES, RunStatus
from agentkeep.runs.stream import StreamTiming, follow_run_events
from agentkeep.worker.queue import RunQueueDep

router = console_router()

RunsRead = Annotated[Principal, Depends(page_permission(Permission.RUNS_READ))]
PAGE_SIZE = 50
EVENTS_SHOWN = 500


class PageRunApproval(RunApprovalCheck):
    """The API's approver check (the run's agent names the roles), for console requests."""

    async def __call__(self, request: Request, principal: ConsolePrincipal, session: SessionDep) -> Principal:
        return await self.check(request, principal, session)


RunApprover = Annotated[Principal, Depends(PageRunApproval())]


@router.get("/runs")
async def list_runs(
    request: Request,
    principal: RunsRead,
    service: RunServiceDep,
    agent_id: uuid.UUID | None = None,
    thread_id: uuid.UUID | None = None,
    status: Annotated[str | None, Query(max_length=32)] = None,
) -> Response:
    chosen = RunStatus(status) if status is not None and status in RunStatus._value2member_map_ else None
    filters = RunFilters(agent_id=agent_id, status=chosen, thread_id=thread_id)
    rows, _ = await service.page(run_actor(principal), filters, PAGE_SIZE, None)
    return render(
        request,
        "runs/list.html",
        {
            "runs": [RunRead.from_row(row) for row in rows],
            "statuses": [value.value for value in RunStatus],
            "status": chosen.value if chosen else None,
            "agent_id": agent_id,
            "thread_id": thread_id,
        },
    )


@router.get("/runs/{run_id}")
async def show_run(
    request: Request, run_id: uuid.UUID, principal: RunsRead, service: RunServiceDep
) -> Response:
    run = await service.get(run_actor(principal), run_id)
    async with sessionmaker_of(request)() as session:
        events = await events_after(session, run.org_id, run.id, 0, EVENTS_SHOWN)
    raw = [(event.kind, event.data) for event in events]
    waiting = open_approvals(run.status, raw)
    views = [event_view(run.id, event.seq, event.kind, event.data, open_calls=waiting) for event in events]
    read = RunRead.from_run(run)
    duration = None
    if read.started_at and read.finished_at:
        duration = round((read.finished_at - read.started_at).total_seconds(), 3)
    return render(
        request,
        "runs/show.html",
        {
            "run": read,
            "events": views,
            "duration": duration,
            "live": run.status not in TERMINAL_STATUSES,
            "last_seq": events[-1].seq if events else 0,
        },
    )


def _sse(event: str, data: str, event_id: str | None = None) -> str:
    lines = [f"id: {event_id}"] if event_id is not None else []
    lines.append(f"event: {event}")
    lines.extend(f"data: {line}" for line in data.splitlines() or [""])
    return "\n".join(lines) + "\n\n"


@router.get("/runs/{run_id}/stream")
async def stream_run(
    request: Request,
    run_id: uuid.UUID,
    principal: RunsRead,
    service: RunServiceDep,
    timing: Annotated[StreamTiming, Depends(get_stream_timing)],
    after: Annotated[int, Query(ge=0, le=MAX_EVENT_SEQ)] = 0,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=10)] = None,
) -> Response:
    """The run's events as server-rendered HTML fragments over SSE (`item`), then `end`.
    The API's own event source (runs/stream.py); EventSource resumes with Last-Event-ID."""
    run = await service.get(run_actor(principal), run_id)
    if last_event_id and last_event_id.strip():
        if not last_event_id.strip().isdigit():
            raise InvalidInput("Last-Event-ID must be an event id this stream sent.")
        after = min(int(last_event_id.strip()), MAX_EVENT_SEQ)
    template = environment_of(request).get_template("partials/event.html")
    csrf_context = {"can_approve": True}
    sessionmaker, hub = sessionmaker_of(request), request.app.state.hub
    org_id = run.org_id

    async def fragments() -> AsyncIterator[str]:
        open_calls: set[str] = set()
        async for sent in follow_run_events(sessionmaker, hub, org_id, run_id, after, timing):
            if sent.comment is not None:
                yield f": {sent.comment}\n\n"
                continue
            kind, data = str(sent.event), dict(sent.data or {})
            call_id = str(data.get("tool_call_id"))
            if kind == "approval_requested":
                open_calls.add(call_id)
            elif kind == "approval_decided":
                open_calls.discard(call_id)
            view = event_view(run_id, int(str(sent.id)), kind, data, open_calls=open_calls)
            yield _sse("item", template.render(event=view, **csrf_context), str(sent.id))
        yield _sse("end", "")

    headers = {**PAGE_HEADERS, "X-Accel-Buffering": "no"}
    return StreamingResponse(fragments(), media_type="text/event-stream", headers=headers)


@router.post("/runs/{run_id}/approvals")
async def decide(
    request: Request,
    run_id: uuid.UUID,
    principal: RunApprover,
    service: ApprovalServiceDep,
    queue: RunQueueDep,
    tool_call_id: Annotated[str, Form(max_length=200)],
    decision: Annotated[str, Form(max_length=16)],
    reason: Annotated[str | None, Form(max_length=2000)] = None,
) -> Response:
    body = ApprovalDecisions.model_validate(
        {"decisions": [{"tool_call_id": tool_call_id, "decision": decision, "reason": reason or None}]}
    )
    await service.decide(run_actor(principal), run_id, body.decisions, queue)
    return render(request, "partials/decided.html", {"decision": decision, "tool_call_id": tool_call_id})
