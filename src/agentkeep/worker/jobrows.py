"""procrastinate's job rows, read for recovery: which runs still have a job, what a stalled job gets.

A run's job carries the queueing lock `run:<id>`. While a job is `todo` (waiting) or `doing`
(fetched by a worker), the run is held: the sweep does not send it again, however long the
queue. A `doing` job whose worker stopped sending procrastinate heartbeats is stalled;
procrastinate finds those (`JobManager.get_stalled_jobs`) and the sweep settles each one
against the runs table:

- the run is queued and has no other job: the stalled job is retried (procrastinate gives
  it back to the queue, where a live worker fetches it);
- the run is running under a lease that has not expired: left alone, the lease says its
  attempt is alive;
- otherwise (the run ended, has another job, or its lease expired and the sweep has put it
  back in the queue with a job of its own): the stalled job is deleted.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from procrastinate.jobs import Job
from sqlalchemy import BigInteger, String, Text, cast, column, exists, literal, literal_column, select, table
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from agentkeep.runs.models import Run
from agentkeep.runs.states import RunStatus

_jobs = table(
    "procrastinate_jobs",
    column("id", BigInteger),
    column("queueing_lock", Text),
    column("status"),  # procrastinate_job_status: compared with literals, never bound as text
)
_LIVE: tuple[ColumnElement[str], ...] = (literal_column("'todo'"), literal_column("'doing'"))


def queueing_lock(run_id: uuid.UUID) -> str:
    return f"run:{run_id}"


def has_job(*, besides: Sequence[int] = ()) -> ColumnElement[bool]:
    """True for runs with a `todo` or `doing` job (not counting the jobs `besides`)."""
    lock = literal("run:", String) + cast(Run.id, String)
    condition = exists().where(_jobs.c.queueing_lock == lock, _jobs.c.status.in_(_LIVE))
    if besides:
        condition = condition.where(_jobs.c.id.not_in(list(besides)))
    return condition


@dataclass
class StalledPlan:
    retry: list[Job] = field(default_factory=list)
    delete: list[Job] = field(default_factory=list)


def run_of(job: Job) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(job.task_kwargs["run_id"]))
    except (KeyError, ValueError):
        return None


async def plan_stalled(session: AsyncSession, stalled: Iterable[Job], *, now: datetime) -> StalledPlan:
    """Decide, with one query, which stalled jobs to retry and which to delete (see the module)."""
    by_run: dict[uuid.UUID, list[Job]] = {}
    plan = StalledPlan()
    for job in sorted(stalled, key=lambda job: job.id or 0):
        run_id = run_of(job)
        if run_id is None:
            plan.delete.append(job)
        else:
            by_run.setdefault(run_id, []).append(job)
    if not by_run:
        return plan
    stalled_ids = [job.id for jobs in by_run.values() for job in jobs if job.id is not None]
    rows = await session.execute(
        select(
            Run.id,
            Run.status,
            Run.cancel_requested_at.is_not(None),
            Run.lease_expires_at,
            has_job(besides=stalled_ids),
        ).where(Run.id.in_(sorted(by_run)))
    )
    runs = {row[0]: row for row in rows}
    for run_id, jobs in by_run.items():
        row = runs.get(run_id)
        if row is None:
            plan.delete.extend(jobs)
            continue
        _, status, cancel_requested, lease_expires_at, other_job = row
        if status == RunStatus.RUNNING and lease_expires_at is not None and lease_expires_at >= now:
            continue
        if status == RunStatus.QUEUED and not cancel_requested and not other_job:
            plan.retry.append(jobs[0])
            plan.delete.extend(jobs[1:])
        else:
            plan.delete.extend(jobs)
    return plan
