"""HTTP endpoints for runs: start one on an agent, list, read, cancel, stream its events.

(No `from __future__ import annotations`: FastAPI reads the generator endpoint's return
annotation to recognise it as an event stream.)
"""

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import WithJsonSchema
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agentkeep.audit.service import AuditDep
from agentkeep.auth.dependencies import Principal, get_current_principal
from agentkeep.db.session import SessionDep, get_sessionmaker
from agentkeep.dependencies import SettingsDep
from agentkeep.errors import InvalidInput
from agentkeep.idempotency.models import IDEMPOTENCY_KEY_PATTERN
from agentkeep.notify.hub import Hub
from agentkeep.ratelimit.dependency import principal_key, rate_limit
from agentkeep.ratelimit.errors import RateLimitDecision
from agentkeep.ratelimit.rules import RuleName
from agentkeep.rbac.dependencies import require
from agentkeep.rbac.permissions import Permission
from agentkeep.runs.repository import RunFilters
from agentkeep.runs.schemas import RunCreate, RunListQuery, RunPage, RunRead
from agentkeep.runs.service import RunActor, RunService
from agentkeep.runs.stream import StreamTiming, follow_run_events
from agentkeep.worker.queue import RunQueueDep

router = APIRouter(prefix="/api", tags=["runs"])

RunsCreator = Annotated[Principal, Depends(require(Permission.RUNS_CREATE))]
RunsReader = Annotated[Principal, Depends(require(Permission.RUNS_READ))]
RunsCanceller = Annotated[Principal, Depends(require(Permission.RUNS_CANCEL))]
# RATE_LIMIT_RUNS per user, or per API key; counted after the permission check.
RunsLimit = Annotated[
    RateLimitDecision,
    Depends(rate_limit(RuleName.RUNS, key=principal_key(get_current_principal, "limit_key"))),
]
LOCATION = {"Location": {"description": "The run, to follow.", "schema": {"type": "string"}}}
# Event numbers are 32-bit integers in the database.
MAX_EVENT_SEQ = 2**31 - 1


async def get_run_service(session: SessionDep, audit: AuditDep, settings: SettingsDep) -> RunService:
    return RunService(session, audit, settings.org_monthly_token_budget)


RunServiceDep = Annotated[RunService, Depends(get_run_service)]


def run_actor(principal: Principal) -> RunActor:
    assert principal.org_id is not None  # require(...) passed: the caller is a member there
    return RunActor(
        user_id=principal.user_id,
        org_id=principal.org_id,
        api_key_id=principal.api_key_id,
        read_all_threads=principal.can(Permission.THREADS_READ_ALL),
    )


def _located(response: Response, run: RunRead) -> RunRead:
    response.headers["Location"] = f"/api/runs/{run.id}"
    return run


@router.post(
    "/agents/{agent_id}/runs",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RunRead,
    responses={
        202: {"headers": LOCATION},
        409: {"description": "The agent is disabled, or the Idempotency-Key was used with another body."},
        429: {"description": "A rate limit or the organization's monthly token budget is reached."},
    },
)
async def create_run(
    agent_id: uuid.UUID,
    body: RunCreate,
    principal: RunsCreator,
    _limit: RunsLimit,
    service: RunServiceDep,
    queue: RunQueueDep,
    response: Response,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", json_schema_extra={"pattern": IDEMPOTENCY_KEY_PATTERN})
    ] = None,
) -> RunRead:
    """Queue a run of the agent's current version on `input`; follow it at `Location`.
    With an `Idempotency-Key`, a retry of the same request answers the same run."""
    created = await service.create(
        run_actor(principal), agent_id, body.input, queue=queue, idempotency_key=idempotency_key
    )
    if created.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return _located(response, RunRead.from_run(created.run))


@router.get("/runs", response_model=RunPage)
async def list_runs(
    principal: RunsReader, query: Annotated[RunListQuery, Query()], service: RunServiceDep
) -> RunPage:
    """The organization's runs the caller may see, newest first, cursor-paginated; filter by
    agent, status and thread (a thread's runs are its turns)."""
    filters = RunFilters(agent_id=query.agent_id, status=query.status, thread_id=query.thread_id)
    rows, next_cursor = await service.page(run_actor(principal), filters, query.limit, query.cursor)
    return RunPage(items=[RunRead.from_row(row) for row in rows], next_cursor=next_cursor)


@router.get("/runs/{run_id}", response_model=RunRead)
async def get_run(run_id: uuid.UUID, principal: RunsReader, service: RunServiceDep) -> RunRead:
    """One run: status, output or error, usage."""
    return RunRead.from_run(await service.get(run_actor(principal), run_id))


@router.post(
    "/runs/{run_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RunRead,
    responses={202: {"headers": LOCATION}, 409: {"description": "The run has already finished."}},
)
async def cancel_run(
    run_id: uuid.UUID,
    principal: RunsCanceller,
    service: RunServiceDep,
    queue: RunQueueDep,
    response: Response,
) -> RunRead:
    """Cancel a run: a queued run at once, a running one within about a second (its
    `cancel_requested_at` is set meanwhile). A finished run answers 409."""
    return _located(response, RunRead.from_run(await service.cancel(run_actor(principal), run_id, queue)))


@dataclass(frozen=True, slots=True)
class StreamedRun:
    org_id: uuid.UUID
    run_id: uuid.UUID


async def streamed_run(run_id: uuid.UUID, principal: RunsReader, service: RunServiceDep) -> StreamedRun:
    """Authorize before the stream starts: another organization's run is a plain 404."""
    run = await service.get(run_actor(principal), run_id)
    return StreamedRun(org_id=run.org_id, run_id=run.id)


# 0 to 2**31 - 1 in ASCII digits, or empty (as if absent), as the header travels (a string: an
# integer schema would be checked against the text by validators). Ten digits only up to
# 2147483647; written without lookahead so that every validator and generator reads it.
EVENT_ID_PATTERN = (
    r"^(?:[0-9]{1,9}|[01][0-9]{9}|20[0-9]{8}|21[0-3][0-9]{7}|214[0-6][0-9]{6}|2147[0-3][0-9]{5}"
    r"|21474[0-7][0-9]{4}|214748[0-2][0-9]{3}|2147483[0-5][0-9]{2}|21474836[0-3][0-9]|214748364[0-7])?$"
)
# Read as text and checked by hand, so that an empty header counts as absent (the schema
# only documents the pattern: int() would also take "+5" or "1_0").
LastEventId = Annotated[
    str | None,
    WithJsonSchema({"type": "string", "pattern": EVENT_ID_PATTERN}),
    Header(
        alias="Last-Event-ID",
        description="The id of the last event received (0 to 2**31 - 1); the stream resumes after it.",
    ),
]


async def resume_after(
    last_event_id: LastEventId = None,
    after: Annotated[
        int | None, Query(ge=0, le=MAX_EVENT_SEQ, description="Resume after this event id.")
    ] = None,
) -> int:
    """Where a stream resumes: `Last-Event-ID` (sent by EventSource on reconnect), else `after`."""
    if last_event_id is not None and last_event_id.strip():
        value = last_event_id.strip()
        if not value.isascii() or not value.isdigit() or len(value) > len(str(MAX_EVENT_SEQ)):
            raise InvalidInput("Last-Event-ID must be an event id this stream sent.")
        if int(value) > MAX_EVENT_SEQ:
            raise InvalidInput("Last-Event-ID must be an event id this stream sent.")
        return int(value)
    return after or 0


async def get_hub(request: Request) -> Hub:
    """This process's notification hub (created with the engine by the lifespan)."""
    hub: Hub = request.app.state.hub
    return hub


async def get_stream_timing(request: Request) -> StreamTiming:
    timing: StreamTiming | None = getattr(request.app.state, "run_stream_timing", None)
    return timing or StreamTiming()


@router.get(
    "/runs/{run_id}/events",
    response_class=EventSourceResponse,
    responses={200: {"description": "`id: <seq>`, `event: <kind>`, `data: <json>` per event."}},
)
async def stream_run_events(
    run: Annotated[StreamedRun, Depends(streamed_run)],
    after: Annotated[int, Depends(resume_after)],
    sessionmaker: Annotated[async_sessionmaker[AsyncSession], Depends(get_sessionmaker)],
    timing: Annotated[StreamTiming, Depends(get_stream_timing)],
    hub: Annotated[Hub, Depends(get_hub)],
) -> AsyncIterator[ServerSentEvent]:
    """The run's events as Server-Sent Events: history first, then live, until it ends.
    Resumable: reconnect with `Last-Event-ID` (or `?after=`) to continue after that event."""
    async for event in follow_run_events(sessionmaker, hub, run.org_id, run.run_id, after, timing):
        yield event
