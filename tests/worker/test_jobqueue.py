"""The procrastinate job queue on a real PostgreSQL: schema, dispatch, an in-process worker."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

from agentkeep.config import Settings
from agentkeep.db.migrate import include_object
from agentkeep.db.models import Base
from agentkeep.runs.states import RunStatus
from agentkeep.worker.command import run_worker
from agentkeep.worker.jobqueue import JobRunQueue, create_job_app, queue_conninfo
from agentkeep.worker.queue_schema import QueueSchemaChanges, apply_queue_schema
from agentkeep.worker.runtime import RunExecution
from tests.worker.helpers import ScriptedExecutor, load_run, make_run, statuses, wait_for_status


async def _jobs(url: str) -> list[tuple[str, str, str | None]]:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                text(
                    "SELECT status::text, args->>'run_id', queueing_lock FROM procrastinate_jobs ORDER BY id"
                )
            )
            return [(row[0], row[1], row[2]) for row in rows]
    finally:
        await engine.dispose()


def test_the_queue_connects_with_the_database_url_minus_the_async_driver() -> None:
    url = "postgresql+asyncpg://agent:s3cret@db.internal:6432/agentkeep"
    assert queue_conninfo(url) == "postgresql://agent:s3cret@db.internal:6432/agentkeep"


async def test_the_queue_schema_is_created_once_and_ignored_by_alembic(queue_database: str) -> None:
    assert await asyncio.to_thread(apply_queue_schema, queue_database) == QueueSchemaChanges()
    engine = create_async_engine(queue_database, poolclass=NullPool)

    def diff(connection: Connection) -> list[object]:
        opts = {"compare_type": True, "compare_server_default": True, "include_object": include_object}
        return list(compare_metadata(MigrationContext.configure(connection, opts=opts), Base.metadata))

    try:
        async with engine.connect() as connection:
            assert await connection.scalar(text("SELECT to_regclass('procrastinate_jobs') IS NOT NULL"))
            assert await connection.run_sync(diff) == []
    finally:
        await engine.dispose()


async def test_dispatch_waits_one_job_per_run_however_often_it_is_sent(
    queue_database: str,
    queue_settings: Callable[..., Settings],
    queue_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    run_id = await make_run(queue_sessionmaker)
    app = create_job_app(queue_settings(), max_size=2)
    async with app.open_async():
        queue = JobRunQueue(app, queue_sessionmaker)
        for _ in range(3):
            await queue.dispatch(run_id)
    assert await _jobs(queue_database) == [("todo", str(run_id), f"run:{run_id}")]
    assert (await load_run(queue_sessionmaker, run_id)).dispatched_at is not None


async def test_dispatch_never_raises_when_the_queue_is_unreachable(
    queue_settings: Callable[..., Settings], queue_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    run_id = await make_run(queue_sessionmaker)
    app = create_job_app(queue_settings(), max_size=1)
    queue = JobRunQueue(app, queue_sessionmaker)  # never opened: every defer fails
    await queue.dispatch(run_id)
    run = await load_run(queue_sessionmaker, run_id)
    assert (run.status, run.dispatched_at) == ("queued", None)  # left for the sweep


async def test_a_worker_executes_dispatched_runs_and_stops_gracefully(
    queue_database: str,
    queue_settings: Callable[..., Settings],
    queue_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    settings = queue_settings(run_concurrency=2, shutdown_timeout_seconds=1)
    stop = asyncio.Event()
    executor = ScriptedExecutor(hold=True)
    worker = asyncio.create_task(run_worker(settings, executor=executor, stop=stop))
    try:
        dispatched = await make_run(queue_sessionmaker, "sent by the API")
        app = create_job_app(settings, max_size=1)
        async with app.open_async():
            await JobRunQueue(app, queue_sessionmaker).dispatch(dispatched)
        # Never dispatched: the worker's sweep finds it.
        forgotten = await make_run(queue_sessionmaker, "accepted, then the dispatch was lost")
        await wait_for_status(queue_sessionmaker, dispatched, RunStatus.RUNNING)
        await wait_for_status(queue_sessionmaker, forgotten, RunStatus.RUNNING)
        executor.release.set()
        await wait_for_status(queue_sessionmaker, dispatched, RunStatus.COMPLETED)
        await wait_for_status(queue_sessionmaker, forgotten, RunStatus.COMPLETED)

        executor.release.clear()
        handed_back = await make_run(queue_sessionmaker, "outlasts the shutdown")
        await wait_for_status(queue_sessionmaker, handed_back, RunStatus.RUNNING)
    finally:
        stop.set()
        await asyncio.wait_for(worker, 30)
    run = await load_run(queue_sessionmaker, handed_back)
    assert (run.status, run.attempts, run.lease_owner) == ("queued", 0, None)
    assert await statuses(queue_sessionmaker, handed_back) == ["running", "queued"]
    assert all(status != "doing" for status, _, _ in await _jobs(queue_database))


async def test_serve_in_queue_mode_only_dispatches(
    queue_database: str,
    queue_settings: Callable[..., Settings],
    queue_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    execution = RunExecution(queue_settings(), queue_sessionmaker)
    assert execution.mode == "queue"
    queue = await execution.start()
    try:
        run_id = await make_run(queue_sessionmaker)
        await queue.dispatch(run_id)
        await asyncio.sleep(0.5)
    finally:
        await execution.stop()
    assert await _jobs(queue_database) == [("todo", str(run_id), f"run:{run_id}")]
    assert (await load_run(queue_sessionmaker, run_id)).status == "queued"  # nothing executes in serve
