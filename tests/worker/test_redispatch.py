"""The recovery sweep sends a queued run again only when nothing holds it any more.

A run that merely waits in a long queue keeps its procrastinate job (`todo`, or `doing` on a
live worker) or its place in an in-process runner's memory, and is never sent twice; a run
whose job is really gone is sent again; a job left `doing` by a dead worker leads to one
more execution of its run, never two. The job-queue part runs on PostgreSQL (procrastinate's
own tables, a real worker), the in-process part on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest
from procrastinate import App
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agentkeep.config import Settings
from agentkeep.runs.states import RunStatus
from agentkeep.worker.command import run_worker
from agentkeep.worker.driver import RunDriver
from agentkeep.worker.inprocess import InProcessRunQueue
from agentkeep.worker.jobqueue import QUEUE_NAME, JobRunQueue, create_job_app
from agentkeep.worker.recovery import REDISPATCH_AFTER_SECONDS, RecoverySweep
from agentkeep.worker.redispatch import candidates
from tests.support.timing import SCHEDULING_MARGIN_SECONDS
from tests.worker.helpers import (
    ScriptedExecutor,
    Sessionmaker,
    let_lease_lapse,
    load_run,
    make_run,
    set_run,
    statuses,
    wait_for_status,
)

# Short, so that waiting jobs are older than it within the test.
REDISPATCH_AFTER = 0.5
# More runs than one sweep batch (100): held runs must not hide a lost one behind them.
MANY = 130
COMPLETION_SECONDS = 20 + SCHEDULING_MARGIN_SECONDS

Job = tuple[int, str, uuid.UUID]


async def jobs(sessionmaker: Sessionmaker) -> list[Job]:
    """procrastinate's job rows: id, status, and the run its arguments name."""
    async with sessionmaker() as session:
        rows = await session.execute(
            text("SELECT id, status::text, args->>'run_id' FROM procrastinate_jobs ORDER BY id")
        )
        return [(int(row[0]), str(row[1]), uuid.UUID(row[2])) for row in rows]


async def sql(sessionmaker: Sessionmaker, statement: str, **params: object) -> None:
    async with sessionmaker() as session, session.begin():
        await session.execute(text(statement), params)


async def outwait_redispatch_after() -> None:
    await asyncio.sleep(REDISPATCH_AFTER * 2)


@pytest.fixture
async def job_app(queue_settings: Callable[..., Settings]) -> AsyncIterator[App]:
    app = create_job_app(queue_settings(), max_size=2)
    async with app.open_async():
        yield app


@pytest.fixture
def job_queue(job_app: App, queue_sessionmaker: async_sessionmaker[AsyncSession]) -> JobRunQueue:
    return JobRunQueue(job_app, queue_sessionmaker)


def job_sweep(sessionmaker: Sessionmaker, settings: Settings, queue: JobRunQueue) -> RecoverySweep:
    return RecoverySweep(sessionmaker, settings, queue, redispatch_after=REDISPATCH_AFTER)


async def fetch_as_worker(app: App, *, dead: bool) -> tuple[int, int]:
    """Fetch the next job as a procrastinate worker would (job `doing`); a dead worker's
    heartbeat is an hour old. The worker's and the job's ids."""
    worker_id = await app.job_manager.register_worker()
    job = await app.job_manager.fetch_job([QUEUE_NAME], worker_id)
    assert job is not None
    assert job.id is not None
    if dead:
        await app.connector.execute_query_async(
            "UPDATE procrastinate_workers SET last_heartbeat = now() - interval '1 hour' WHERE id = %(id)s",
            id=worker_id,
        )
    return worker_id, job.id


async def execute_with_a_worker(
    settings: Settings, sessionmaker: Sessionmaker, run_ids: list[uuid.UUID]
) -> ScriptedExecutor:
    """A real worker (procrastinate and the sweep) until the runs completed."""
    stop = asyncio.Event()
    executor = ScriptedExecutor()
    worker = asyncio.create_task(run_worker(settings, executor=executor, stop=stop))
    try:
        for run_id in run_ids:
            await wait_for_status(sessionmaker, run_id, RunStatus.COMPLETED, within=COMPLETION_SECONDS)
    finally:
        stop.set()
        await asyncio.wait_for(worker, 30)
    return executor


async def test_runs_waiting_in_a_long_queue_are_not_sent_again(
    queue_settings: Callable[..., Settings],
    queue_sessionmaker: Sessionmaker,
    job_app: App,
    job_queue: JobRunQueue,
) -> None:
    waiting = [await make_run(queue_sessionmaker, f"waits {n}") for n in range(MANY)]
    for run_id in waiting:
        await job_queue.dispatch(run_id)
    # A live worker has taken five jobs (`doing`) but not claimed their runs yet: the
    # queueing lock would let a second job in beside each of them.
    for _ in range(5):
        await fetch_as_worker(job_app, dead=False)
    lost = await make_run(queue_sessionmaker, "its job was deleted")
    await job_queue.dispatch(lost)
    await sql(queue_sessionmaker, "DELETE FROM procrastinate_jobs WHERE args->>'run_id' = :id", id=str(lost))
    before = {run_id: status for _, status, run_id in await jobs(queue_sessionmaker)}
    assert list(before.values()).count("doing") == 5
    await outwait_redispatch_after()

    sweep = job_sweep(queue_sessionmaker, queue_settings(), job_queue)
    first = await sweep.run_once()
    await outwait_redispatch_after()
    second = await sweep.run_once()

    assert first.redispatched == [lost]
    assert (second.redispatched, first.retried, second.retried) == ([], [], [])
    after = await jobs(queue_sessionmaker)
    assert sorted(run_id for _, _, run_id in after) == sorted([*waiting, lost])  # one job per run
    assert {run_id: status for _, status, run_id in after} == {**before, lost: "todo"}


async def test_a_run_whose_job_is_gone_is_sent_again_and_executed_once(
    queue_settings: Callable[..., Settings], queue_sessionmaker: Sessionmaker, job_queue: JobRunQueue
) -> None:
    run_id = await make_run(queue_sessionmaker)
    await job_queue.dispatch(run_id)
    await sql(queue_sessionmaker, "DELETE FROM procrastinate_jobs")
    await outwait_redispatch_after()

    report = await job_sweep(queue_sessionmaker, queue_settings(), job_queue).run_once()

    assert report.redispatched == [run_id]
    assert [(status, run) for _, status, run in await jobs(queue_sessionmaker)] == [("todo", run_id)]
    executor = await execute_with_a_worker(queue_settings(), queue_sessionmaker, [run_id])
    assert executor.calls == 1
    assert await jobs(queue_sessionmaker) == []


async def test_a_job_a_dead_worker_fetched_is_retried_by_procrastinate_once(
    queue_settings: Callable[..., Settings],
    queue_sessionmaker: Sessionmaker,
    job_app: App,
    job_queue: JobRunQueue,
) -> None:
    """The worker died between fetching the job and claiming the run: the run is still queued."""
    run_id = await make_run(queue_sessionmaker)
    await job_queue.dispatch(run_id)
    _, job_id = await fetch_as_worker(job_app, dead=True)
    await outwait_redispatch_after()
    sweep = job_sweep(queue_sessionmaker, queue_settings(), job_queue)

    first = await sweep.run_once()
    await outwait_redispatch_after()
    second = await sweep.run_once()

    assert (first.retried, first.redispatched) == ([run_id], [])
    assert (second.retried, second.redispatched) == ([], [])
    assert await jobs(queue_sessionmaker) == [(job_id, "todo", run_id)]  # the same job, given back
    executor = await execute_with_a_worker(queue_settings(), queue_sessionmaker, [run_id])
    assert executor.calls == 1
    run = await load_run(queue_sessionmaker, run_id)
    assert run.attempts == 1
    assert await jobs(queue_sessionmaker) == []


async def test_a_run_whose_dead_worker_held_its_lease_is_recovered_once(
    queue_settings: Callable[..., Settings],
    queue_sessionmaker: Sessionmaker,
    job_app: App,
    job_queue: JobRunQueue,
) -> None:
    """The worker died mid-run: the lease expiry requeues the run, its stalled job is deleted."""
    settings = queue_settings(run_max_attempts=3)
    run_id = await make_run(queue_sessionmaker)
    await job_queue.dispatch(run_id)
    _, stalled_job = await fetch_as_worker(job_app, dead=True)
    await let_lease_lapse(queue_sessionmaker, run_id, "dead-worker", max_attempts=3)
    sweep = job_sweep(queue_sessionmaker, settings, job_queue)

    first = await sweep.run_once()
    await outwait_redispatch_after()
    second = await sweep.run_once()

    assert (first.requeued, first.retried, first.redispatched) == ([run_id], [], [])
    assert (second.requeued, second.retried, second.redispatched) == ([], [], [])
    remaining = await jobs(queue_sessionmaker)
    assert [(status, run) for _, status, run in remaining] == [("todo", run_id)]
    assert remaining[0][0] != stalled_job
    executor = await execute_with_a_worker(settings, queue_sessionmaker, [run_id])
    assert executor.calls == 1
    assert (await load_run(queue_sessionmaker, run_id)).attempts == 2
    assert await statuses(queue_sessionmaker, run_id) == ["running", "queued", "running", "completed"]
    assert await jobs(queue_sessionmaker) == []


async def test_a_stalled_job_of_a_run_under_a_live_lease_is_left_alone(
    queue_settings: Callable[..., Settings],
    queue_sessionmaker: Sessionmaker,
    job_app: App,
    job_queue: JobRunQueue,
) -> None:
    """procrastinate's heartbeat fell silent, but the run's lease is renewed: its attempt lives."""
    run_id = await make_run(queue_sessionmaker)
    await job_queue.dispatch(run_id)
    _, job_id = await fetch_as_worker(job_app, dead=True)
    now = datetime.now(UTC)
    await set_run(
        queue_sessionmaker,
        run_id,
        status=RunStatus.RUNNING,
        lease_owner="alive",
        lease_expires_at=now + timedelta(minutes=5),
        attempts=1,
    )

    report = await job_sweep(queue_sessionmaker, queue_settings(), job_queue).run_once()

    assert (report.requeued, report.retried, report.redispatched) == ([], [], [])
    assert await jobs(queue_sessionmaker) == [(job_id, "doing", run_id)]
    assert (await load_run(queue_sessionmaker, run_id)).lease_owner == "alive"


async def test_runs_held_by_the_in_process_runner_are_not_sent_again(
    sessionmaker: Sessionmaker, make_driver: Callable[..., RunDriver], run_settings: Callable[..., Settings]
) -> None:
    executor = ScriptedExecutor(hold=True)
    runner = InProcessRunQueue(make_driver("serve-1", executor), sessionmaker, concurrency=1)
    other = InProcessRunQueue(make_driver("serve-2", executor), sessionmaker, concurrency=1)
    await runner.start()
    await other.start()
    try:
        run_ids = [await make_run(sessionmaker, f"task {n}") for n in range(4)]
        for run_id in run_ids:
            await runner.dispatch(run_id)
        await wait_for_status(sessionmaker, run_ids[0], RunStatus.RUNNING)
        long_ago = datetime.now(UTC) - timedelta(hours=1)
        for run_id in run_ids[1:]:  # waiting in memory, their dispatch long past
            await set_run(sessionmaker, run_id, dispatched_at=long_ago)
        lost = await make_run(sessionmaker, "accepted, then the dispatch was lost")

        # The product's window, not the short one of the other tests: a vouch counts for that
        # long, and a host that stalls this process between the two sweeps for longer than a
        # short window would let the second sweep find the vouch stale, as it should. The lost
        # run was never dispatched, so it is stale under any window.
        own = await RecoverySweep(
            sessionmaker, run_settings(), runner, redispatch_after=REDISPATCH_AFTER_SECONDS
        ).run_once()
        # Another process's sweep sees them vouched for by the runner that holds them.
        theirs = await RecoverySweep(
            sessionmaker, run_settings(), other, redispatch_after=REDISPATCH_AFTER_SECONDS
        ).run_once()

        assert (own.redispatched, theirs.redispatched) == ([lost], [])
        for run_id in run_ids[1:]:
            run = await load_run(sessionmaker, run_id)
            assert run.status == "queued"
            assert run.dispatched_at is not None
            assert run.dispatched_at > long_ago
        executor.release.set()
        for run_id in [*run_ids, lost]:
            await wait_for_status(sessionmaker, run_id, RunStatus.COMPLETED, within=COMPLETION_SECONDS)
        assert executor.calls == len(run_ids) + 1  # each run executed once
    finally:
        await runner.stop(grace_seconds=5)
        await other.stop(grace_seconds=5)


async def test_the_runner_finds_lost_only_the_runs_it_does_not_hold(
    sessionmaker: Sessionmaker, make_driver: Callable[..., RunDriver]
) -> None:
    """Its own memory decides, even for a run whose dispatch is not yet marked in the table."""
    executor = ScriptedExecutor(hold=True)
    runner = InProcessRunQueue(make_driver("serve-1", executor), sessionmaker, concurrency=1)
    await runner.start()
    try:
        running, waiting, lost = [await make_run(sessionmaker, name) for name in ("runs", "waits", "lost")]
        for run_id in (running, waiting):
            await runner.hand_over(run_id)  # in memory, `dispatched_at` still empty
        await wait_for_status(sessionmaker, running, RunStatus.RUNNING)
        every_queued_run = candidates(stale_before=datetime.now(UTC) + timedelta(hours=1), limit=10)

        assert await runner.lost(every_queued_run) == [lost]
    finally:
        executor.release.set()
        await runner.stop(grace_seconds=5)
