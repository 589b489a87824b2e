"""What a finished run leaves behind besides its row: an audit record, its webhook event and
metrics."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import structlog
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agentkeep.audit.actions import ActorType, AuditAction, AuditStatus
from agentkeep.audit.service import record
from agentkeep.context import RequestContext
from agentkeep.observability.metrics import Metrics
from agentkeep.runs.models import Run
from agentkeep.runs.states import RunStatus
from agentkeep.webhooks import outbox as webhook_outbox
from agentkeep.webhooks.events import run_event
from agentkeep.worker.leases import FINISHED_COLUMNS, Finished, finished
from agentkeep.worker.liveness import live_workers

logger = structlog.get_logger("agentkeep.worker")

# Final statuses the runner audits; a cancellation was audited when a user asked for it.
_AUDITED = {
    RunStatus.COMPLETED: (AuditAction.RUN_COMPLETED, AuditStatus.SUCCESS),
    RunStatus.FAILED: (AuditAction.RUN_FAILED, AuditStatus.FAILURE),
    RunStatus.TIMED_OUT: (AuditAction.RUN_FAILED, AuditStatus.FAILURE),
}


async def finished_row(session: AsyncSession, run_id: uuid.UUID) -> Finished:
    row = (await session.execute(select(*FINISHED_COLUMNS).where(Run.id == run_id))).one()
    return finished(row)


async def audit_finished(
    session: AsyncSession, run_id: uuid.UUID, run: Finished | None = None, output: str | None = None
) -> None:
    """Audit a run's end, and queue its webhook event, in the transaction that recorded it
    (`run`: the row as recorded, read here when not given; `output`: the run's answer, sent
    only to webhooks that opted in to content)."""
    if run is None:
        run = await finished_row(session, run_id)
    if run.webhooks:
        data = run_data(run_id, run, output)
        await webhook_outbox.record(session, org_id=run.org_id, type=run_event(run.status), data=data)
    audited = _AUDITED.get(RunStatus(run.status))
    if audited is None:
        return
    action, status = audited
    await record(
        session,
        action,
        context=RequestContext.system(),
        org_id=run.org_id,
        actor_type=ActorType.SYSTEM,
        resource_type="run",
        resource_id=run_id,
        status=status,
        details={
            "status": run.status,
            "stop_reason": run.stop_reason,
            "attempts": run.attempts,
            "usage": {
                "requests": run.requests,
                "input_tokens": run.input_tokens,
                "output_tokens": run.output_tokens,
            },
        },
    )


def run_data(run_id: uuid.UUID, run: Finished, output: str | None) -> dict[str, object]:
    data: dict[str, object] = {
        "run_id": str(run_id),
        "status": run.status,
        "stop_reason": run.stop_reason,
        "attempts": run.attempts,
        "usage": {"input_tokens": run.input_tokens, "output_tokens": run.output_tokens},
    }
    if output is not None:
        data["output"] = output
    return data


async def count_finished(session: AsyncSession, run_id: uuid.UUID, metrics: Metrics | None) -> None:
    """Count a finished run (after its transaction committed), reading its row."""
    if metrics is not None:
        count_finished_run(await finished_row(session, run_id), metrics)


def count_finished_run(run: Finished, metrics: Metrics | None) -> None:
    """Count a finished run from its row as recorded (after its transaction committed)."""
    if metrics is None:
        return
    metrics.observe_run_finished(
        run.status,
        run.stop_reason or "",
        _seconds(run.started_at, run.finished_at),
        run.input_tokens,
        run.output_tokens,
    )


def _seconds(started: datetime | None, finished: datetime | None) -> float:
    if started is None or finished is None:
        return 0.0
    return (finished - started).total_seconds()


async def run_counts(session: AsyncSession) -> dict[str, int]:
    """Runs per status, for the gauges refreshed at scrape time."""
    rows = await session.execute(select(Run.status, func.count()).group_by(Run.status))
    return {str(status): int(count) for status, count in rows}


async def oldest_queued_age(session: AsyncSession, now: datetime) -> float:
    """Seconds since the oldest queued run was created, 0 when none is queued. Creation, not
    the last dispatch: a run handed back to the queue has kept its user waiting all along."""
    oldest = await session.scalar(select(func.min(Run.created_at)).where(Run.status == RunStatus.QUEUED))
    return 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())


async def refresh_run_gauges(
    sessionmaker: async_sessionmaker[AsyncSession], metrics: Metrics, *, job_queue: bool = False
) -> None:
    """Refresh the run gauges before a scrape; a database outage leaves the last values.
    `job_queue`: runs are executed by `agentkeep worker` processes, whose liveness is reported."""
    try:
        async with sessionmaker() as session:
            counts = await run_counts(session)
            oldest = await oldest_queued_age(session, datetime.now(UTC))
            workers = await live_workers(session) if job_queue else None
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        logger.warning("run_gauges_failed", error=type(exc).__name__)
        return
    metrics.set_run_counts(counts, [str(status) for status in RunStatus])
    metrics.set_run_queue(oldest, workers)
