"""Production dispatch: one procrastinate job per run, on the PostgreSQL database itself.

A new run's job is written in the transaction that creates the run (`accept`), so the API
never accepts a run without its job, and needs no second transaction to hand it over.

A job carries only the run id; the runs table stays the source of truth (a job for a run
that is no longer claimable does nothing). Each run has a queueing lock, so however often a
run is dispatched (by the API, the sweep, a handing-back worker) at most one job for it
waits in the queue; and the recovery sweep sends a run again only when it has no job at all
(`jobrows`), so a long queue does not multiply its own work.

Nothing here is created at import time: `create_job_app` builds a procrastinate App (and
its connection pool) per process, for `serve` (dispatch only) or a worker (which also
registers the task that executes runs).
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import structlog
from procrastinate import App, PsycopgConnector
from procrastinate.exceptions import AlreadyEnqueued, ConnectorException, UniqueViolation
from procrastinate.jobs import Job, Status
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import Select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agentkeep.config import Settings
from agentkeep.db.faults import classify
from agentkeep.worker import leases
from agentkeep.worker.driver import DB_ERRORS
from agentkeep.worker.jobrows import defer_all_in, defer_in, has_job, plan_stalled, queueing_lock, run_of
from agentkeep.worker.liveness import STALLED_AFTER_SECONDS

logger = structlog.get_logger("agentkeep.worker")

TASK_NAME = "agentkeep.execute_run"
QUEUE_NAME = "runs"
APPLICATION_NAME = "agentkeep-queue"
# Runs per deferral statement when many are handed over at once.
HAND_OVER_CHUNK = 500


def queue_conninfo(database_url: str) -> str:
    """The libpq URL procrastinate (psycopg 3) connects with: DATABASE_URL without +asyncpg."""
    url = make_url(database_url)
    if not url.drivername.startswith("postgresql"):
        raise ValueError("the job queue needs PostgreSQL")
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _pool_options(settings: Settings, max_size: int, min_size: int = 1) -> dict[str, Any]:
    """Connections in autocommit: every procrastinate query (fetch a job, finish it, defer,
    retry) is one statement that commits on its own, so a transaction around each only added
    a BEGIN and a COMMIT round trip: four per run for a worker's fetch and finish."""
    return {
        "min_size": min_size,
        "max_size": max_size,
        "timeout": settings.db_pool_timeout,
        "kwargs": {
            "application_name": APPLICATION_NAME,
            "connect_timeout": max(1, int(settings.db_connect_timeout)),
        },
        # Not in `kwargs`: procrastinate opens its LISTEN connection with those and autocommit.
        "configure": _autocommit,
    }


async def _autocommit(connection: AsyncConnection[Any]) -> None:
    await connection.set_autocommit(True)


def create_pool(settings: Settings, *, max_size: int) -> AsyncConnectionPool:
    """serve's dispatch pool for `App.open_async(pool)`: it connects on the first dispatch
    (min_size 0) and closes idle connections, so serve starts, and answers 503 on readiness,
    while the database is down, and holds no connection it does not use."""
    return AsyncConnectionPool(
        queue_conninfo(settings.database_url),
        open=False,
        check=AsyncConnectionPool.check_connection,
        **_pool_options(settings, max_size, min_size=0),
    )


def create_job_app(settings: Settings, *, max_size: int) -> App:
    """A procrastinate App for this process (its pool opens with `open_async`)."""
    connector = PsycopgConnector(
        conninfo=queue_conninfo(settings.database_url), **_pool_options(settings, max_size)
    )
    return App(connector=connector)


def register_run_task(app: App, drive: Callable[[uuid.UUID], Awaitable[object]]) -> None:
    """The task a worker executes: drive the run (claim, execute, record) by id."""

    async def execute_run(run_id: str) -> None:
        await drive(uuid.UUID(run_id))

    app.task(name=TASK_NAME, queue=QUEUE_NAME, pass_context=False)(execute_run)


class JobRunQueue:
    """RunQueue over procrastinate: `dispatch` defers one job per run (never raises).

    Also what the recovery sweep of a worker asks about runs (`recovery.RunHolder`): which
    queued runs have lost their job, and what becomes of the jobs of dead workers.
    """

    def __init__(
        self,
        app: App,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        stalled_after: float = STALLED_AFTER_SECONDS,
    ) -> None:
        self.app = app
        self.sessionmaker = sessionmaker
        self.stalled_after = stalled_after

    async def accept(self, session: AsyncSession, run_id: uuid.UUID) -> bool:
        """Write the new run's job in its transaction: both commit, or neither does."""
        await defer_in(session, run_id, queue_name=QUEUE_NAME, task_name=TASK_NAME)
        return True

    async def hand_over(self, run_id: uuid.UUID) -> bool:
        deferrer = self.app.configure_task(TASK_NAME, queue=QUEUE_NAME, queueing_lock=queueing_lock(run_id))
        try:
            await deferrer.defer_async(run_id=str(run_id))
        except AlreadyEnqueued:
            return True  # a job for this run is already waiting
        except Exception as exc:
            logger.warning("run_dispatch_failed", run_id=str(run_id), error=type(exc).__name__)
            return False
        return True

    async def hand_over_all(self, run_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
        """Give many queued runs a job each in one transaction (a worker's runs after it died).

        One deferral per run took a round trip and a transaction each: hundreds of runs
        waited seconds to be back in the queue. The runs handed over come back; if a job for
        one of them appeared meanwhile, they are handed over one by one instead.
        """
        if not run_ids:
            return []
        try:
            async with self.sessionmaker() as session, session.begin():
                for start in range(0, len(run_ids), HAND_OVER_CHUNK):
                    chunk = run_ids[start : start + HAND_OVER_CHUNK]
                    await defer_all_in(session, chunk, queue_name=QUEUE_NAME, task_name=TASK_NAME)
            return list(run_ids)
        except IntegrityError:
            pass  # another process deferred one of them first
        except DB_ERRORS as exc:
            logger.warning("run_dispatch_failed", runs=len(run_ids), error=type(exc).__name__)
            return []
        return [run_id for run_id in run_ids if await self.hand_over(run_id)]

    async def dispatch(self, run_id: uuid.UUID) -> None:
        if not await self.hand_over(run_id):
            return  # stays queued with no dispatch time: the sweep sends it again
        try:
            async with self.sessionmaker() as session, session.begin():
                await leases.mark_dispatched(session, run_id, now=datetime.now(UTC))
        except DB_ERRORS as exc:
            logger.warning("run_dispatch_mark_failed", run_id=str(run_id), error=type(exc).__name__)

    async def lost(self, candidates: Select[uuid.UUID]) -> list[uuid.UUID]:
        """The candidates that have no `todo` or `doing` job: one query for the batch."""
        async with self.sessionmaker() as session:
            return list((await session.scalars(candidates.where(~has_job()))).all())

    async def tend(self, *, now: datetime, stale_before: datetime) -> list[uuid.UUID]:
        """Settle the jobs procrastinate reports stalled (`jobrows`); the runs whose job was retried."""
        stalled = list(
            await self.app.job_manager.get_stalled_jobs(
                queue=QUEUE_NAME, task_name=TASK_NAME, seconds_since_heartbeat=self.stalled_after
            )
        )
        if not stalled:
            return []
        async with self.sessionmaker() as session:
            plan = await plan_stalled(session, stalled, now=now)
        retried: list[uuid.UUID] = []
        for job in plan.retry:
            outcome = await self._retry(job)
            if outcome is _Retry.RETRIED and (run_id := run_of(job)) is not None:
                retried.append(run_id)
            elif outcome is _Retry.DUPLICATE:
                plan.delete.append(job)
        for job in plan.delete:
            await self._delete(job)
        if retried or plan.delete:
            logger.info("stalled_jobs_settled", retried=len(retried), deleted=len(plan.delete))
        return retried

    async def _retry(self, job: Job) -> _Retry:
        try:
            await self.app.job_manager.retry_job(job)
        except UniqueViolation:
            return _Retry.DUPLICATE  # another job for the run is waiting already
        except ConnectorException as exc:
            if classify(exc) is not None:
                raise
            # Retried or finished meanwhile, by another sweeper or by its own worker.
            logger.debug("stalled_job_not_retried", job_id=job.id, error=str(exc))
            return _Retry.GONE
        return _Retry.RETRIED

    async def _delete(self, job: Job) -> None:
        try:
            await self.app.job_manager.finish_job(job, status=Status.FAILED, delete_job=True)
        except ConnectorException as exc:
            if classify(exc) is not None:
                raise
            logger.debug("stalled_job_not_deleted", job_id=job.id, error=str(exc))


class _Retry(enum.Enum):
    RETRIED = "retried"
    DUPLICATE = "duplicate"
    GONE = "gone"
