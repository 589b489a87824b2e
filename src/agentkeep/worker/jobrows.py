"""procrastinate's job rows: written with a new run, read for recovery (which runs still have
a job, what a stalled job gets).

A new run's job is written in the transaction that creates the run (`defer_in`), through
procrastinate's own defer function, `procrastinate_defer_jobs_v1`: the SQL its
`JobManager.defer_job_async` runs, with the values `App.configure_task` gives a job of the
run task (default priority, no lock, not scheduled). The job's insert trigger notifies the
workers, and they see the job when the run commits with it, never before.

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

from procrastinate.jobs import DEFAULT_PRIORITY, Job
from sqlalchemy import (
    BigInteger,
    Integer,
    String,
    Text,
    bindparam,
    cast,
    column,
    exists,
    literal,
    literal_column,
    select,
    table,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
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


# One job of procrastinate's composite type `procrastinate_job_to_defer_v1`: queue_name,
# task_name, priority, lock, queueing_lock, args, scheduled_at.
_DEFER = text(
    "SELECT procrastinate_defer_jobs_v1(ARRAY[ROW(:queue_name, :task_name, :priority, NULL, "
    ":queueing_lock, :args, NULL)]::procrastinate_job_to_defer_v1[])"
).bindparams(
    bindparam("queue_name", type_=String),
    bindparam("task_name", type_=String),
    bindparam("priority", type_=Integer),
    bindparam("queueing_lock", type_=Text),
    bindparam("args", type_=JSONB),
)


def queueing_lock(run_id: uuid.UUID) -> str:
    return f"run:{run_id}"


# The same defer for many runs in one statement, leaving out the runs whose job is waiting
# already (procrastinate's queueing lock would refuse a second `todo` job for them).
_DEFER_ALL = text(
    "SELECT procrastinate_defer_jobs_v1(ARRAY("
    "SELECT ROW(:queue_name, :task_name, :priority, NULL, 'run:' || ids.id::text, "
    "jsonb_build_object('run_id', ids.id::text), NULL)::procrastinate_job_to_defer_v1 "
    "FROM unnest(CAST(:run_ids AS uuid[])) AS ids(id) "
    "WHERE NOT EXISTS (SELECT 1 FROM procrastinate_jobs AS jobs "
    "WHERE jobs.queueing_lock = 'run:' || ids.id::text AND jobs.status = 'todo')))"
).bindparams(
    bindparam("queue_name", type_=String),
    bindparam("task_name", type_=String),
    bindparam("priority", type_=Integer),
)


async def defer_in(session: AsyncSession, run_id: uuid.UUID, *, queue_name: str, task_name: str) -> None:
    """Write the run's job in `session`'s transaction (PostgreSQL): it commits with the run.

    Only for a run created in this transaction: no other job can hold its queueing lock yet.
    """
    await session.execute(
        _DEFER,
        {
            "queue_name": queue_name,
            "task_name": task_name,
            "priority": DEFAULT_PRIORITY,
            "queueing_lock": queueing_lock(run_id),
            "args": {"run_id": str(run_id)},
        },
    )


async def defer_all_in(
    session: AsyncSession, run_ids: Sequence[uuid.UUID], *, queue_name: str, task_name: str
) -> None:
    """Write a job for each of these queued runs that has none waiting: one statement.

    A job deferred by someone else between the check and the insert makes the statement fail
    with procrastinate's unique violation; the caller then hands the runs over one by one.
    """
    await session.execute(
        _DEFER_ALL,
        {
            "queue_name": queue_name,
            "task_name": task_name,
            "priority": DEFAULT_PRIORITY,
            "run_ids": [str(run_id) for run_id in run_ids],
        },
    )


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
