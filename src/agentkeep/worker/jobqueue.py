"""Production dispatch: one procrastinate job per run, on the PostgreSQL database itself.

A job carries only the run id; the runs table stays the source of truth (a job for a run
that is no longer claimable does nothing). Each run has a queueing lock, so however often a
run is dispatched (by the API, the sweep, a handing-back worker) at most one job for it
waits in the queue.

Nothing here is created at import time: `create_job_app` builds a procrastinate App (and
its connection pool) per process, for `serve` (dispatch only) or a worker (which also
registers the task that executes runs).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import structlog
from procrastinate import App, PsycopgConnector
from procrastinate.exceptions import AlreadyEnqueued
from psycopg_pool import AsyncConnectionPool
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agentkeep.config import Settings
from agentkeep.worker import leases
from agentkeep.worker.driver import DB_ERRORS

logger = structlog.get_logger("agentkeep.worker")

TASK_NAME = "agentkeep.execute_run"
QUEUE_NAME = "runs"
APPLICATION_NAME = "agentkeep-queue"


def queue_conninfo(database_url: str) -> str:
    """The libpq URL procrastinate (psycopg 3) connects with: DATABASE_URL without +asyncpg."""
    url = make_url(database_url)
    if not url.drivername.startswith("postgresql"):
        raise ValueError("the job queue needs PostgreSQL")
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _queueing_lock(run_id: uuid.UUID) -> str:
    return f"run:{run_id}"


def _pool_options(settings: Settings, max_size: int, min_size: int = 1) -> dict[str, Any]:
    return {
        "min_size": min_size,
        "max_size": max_size,
        "timeout": settings.db_pool_timeout,
        "kwargs": {
            "application_name": APPLICATION_NAME,
            "connect_timeout": max(1, int(settings.db_connect_timeout)),
        },
    }


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
    """RunQueue over procrastinate: `dispatch` defers one job per run (never raises)."""

    def __init__(self, app: App, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.app = app
        self.sessionmaker = sessionmaker

    async def hand_over(self, run_id: uuid.UUID) -> bool:
        deferrer = self.app.configure_task(TASK_NAME, queue=QUEUE_NAME, queueing_lock=_queueing_lock(run_id))
        try:
            await deferrer.defer_async(run_id=str(run_id))
        except AlreadyEnqueued:
            return True  # a job for this run is already waiting
        except Exception as exc:
            logger.warning("run_dispatch_failed", run_id=str(run_id), error=type(exc).__name__)
            return False
        return True

    async def dispatch(self, run_id: uuid.UUID) -> None:
        if not await self.hand_over(run_id):
            return  # stays queued with no dispatch time: the sweep sends it again
        try:
            async with self.sessionmaker() as session, session.begin():
                await leases.mark_dispatched(session, run_id, now=datetime.now(UTC))
        except DB_ERRORS as exc:
            logger.warning("run_dispatch_mark_failed", run_id=str(run_id), error=type(exc).__name__)
