"""The embedded runner and the recovery sweep, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from asgi_lifespan import LifespanManager
from sqlalchemy import func, select, update

from agentkeep.app import create_app
from agentkeep.config import Settings
from agentkeep.runs.models import Run
from agentkeep.runs.states import RunStatus
from agentkeep.worker.driver import RunDriver
from agentkeep.worker.inprocess import InProcessRunQueue
from agentkeep.worker.recovery import BATCH, RecoverySweep
from tests.worker.helpers import (
    RecordingHolder,
    ScriptedExecutor,
    Sessionmaker,
    assert_gap_free,
    events,
    let_lease_lapse,
    load_run,
    make_run,
    set_run,
    statuses,
    wait_for_status,
)

DriverFactory = Callable[..., RunDriver]


async def test_dispatched_runs_execute_with_bounded_concurrency(
    sessionmaker: Sessionmaker, make_driver: DriverFactory
) -> None:
    executor = ScriptedExecutor(hold=True)
    runner = InProcessRunQueue(make_driver("serve-1", executor), sessionmaker, concurrency=2)
    await runner.start()
    try:
        run_ids = [await make_run(sessionmaker, f"task {n}") for n in range(3)]
        for run_id in run_ids:
            await runner.dispatch(run_id)
        await wait_for_status(sessionmaker, run_ids[1], RunStatus.RUNNING)
        await asyncio.sleep(0.3)
        assert runner.running == 2
        waiting = await load_run(sessionmaker, run_ids[2])
        assert waiting.status == "queued"
        assert waiting.dispatched_at is not None
        executor.release.set()
        for run_id in run_ids:
            await wait_for_status(sessionmaker, run_id, RunStatus.COMPLETED)
    finally:
        await runner.stop(grace_seconds=5)


async def test_shutdown_lets_a_short_run_finish(
    sessionmaker: Sessionmaker, make_driver: DriverFactory
) -> None:
    executor = ScriptedExecutor(seconds=0.5)
    runner = InProcessRunQueue(make_driver("serve-1", executor), sessionmaker, concurrency=1)
    await runner.start()
    run_id = await make_run(sessionmaker)
    await runner.dispatch(run_id)
    await asyncio.wait_for(executor.started.wait(), 10)
    await runner.stop(grace_seconds=10)
    assert (await load_run(sessionmaker, run_id)).status == "completed"


async def test_shutdown_hands_back_runs_that_outlast_the_grace_period(
    sessionmaker: Sessionmaker, make_driver: DriverFactory, run_settings: Callable[..., Settings]
) -> None:
    executor = ScriptedExecutor(hold=True)
    runner = InProcessRunQueue(make_driver("serve-1", executor), sessionmaker, concurrency=1)
    await runner.start()
    running_id = await make_run(sessionmaker, "long")
    waiting_id = await make_run(sessionmaker, "next")
    await runner.dispatch(running_id)
    await runner.dispatch(waiting_id)
    await asyncio.wait_for(executor.started.wait(), 10)

    await runner.stop(grace_seconds=0.3)

    handed_back = await load_run(sessionmaker, running_id)
    assert (handed_back.status, handed_back.attempts, handed_back.lease_owner) == ("queued", 0, None)
    assert handed_back.dispatched_at is None  # the next sweep, anywhere, sends it at once
    assert await statuses(sessionmaker, running_id) == ["running", "queued"]
    never_started = await load_run(sessionmaker, waiting_id)
    assert (never_started.status, never_started.dispatched_at) == ("queued", None)
    await runner.dispatch(waiting_id)  # a stopped runner takes nothing
    assert (await load_run(sessionmaker, waiting_id)).dispatched_at is None

    # The next process picks both up and completes them; the interrupted attempt is not counted.
    successor = InProcessRunQueue(make_driver("serve-2", ScriptedExecutor()), sessionmaker, concurrency=2)
    await successor.start()
    try:
        report = await RecoverySweep(sessionmaker, run_settings(), successor).run_once()
        assert set(report.redispatched) == {running_id, waiting_id}
        done = await wait_for_status(sessionmaker, running_id, RunStatus.COMPLETED)
        assert done.attempts == 1
        assert await statuses(sessionmaker, running_id) == ["running", "queued", "running", "completed"]
        assert_gap_free(await events(sessionmaker, running_id))
        await wait_for_status(sessionmaker, waiting_id, RunStatus.COMPLETED)
    finally:
        await successor.stop(grace_seconds=5)


async def test_the_sweep_dispatches_queued_runs_that_have_no_job(
    sessionmaker: Sessionmaker, make_driver: DriverFactory, run_settings: Callable[..., Settings]
) -> None:
    runner = InProcessRunQueue(make_driver("serve-1", ScriptedExecutor()), sessionmaker, concurrency=2)
    never_sent = await make_run(sessionmaker, "never dispatched")
    recently_sent = await make_run(sessionmaker, "just dispatched")
    long_ago = await make_run(sessionmaker, "dispatched to a process that died")
    now = datetime.now(UTC)
    await set_run(sessionmaker, recently_sent, dispatched_at=now - timedelta(seconds=5))
    await set_run(sessionmaker, long_ago, dispatched_at=now - timedelta(seconds=60))
    await runner.start()
    try:
        sweep = RecoverySweep(sessionmaker, run_settings(), runner, redispatch_after=30)
        report = await sweep.run_once()
        assert set(report.redispatched) == {never_sent, long_ago}
        await wait_for_status(sessionmaker, never_sent, RunStatus.COMPLETED)
        await wait_for_status(sessionmaker, long_ago, RunStatus.COMPLETED)
        assert (await load_run(sessionmaker, recently_sent)).status == "queued"
    finally:
        await runner.stop(grace_seconds=5)


async def test_concurrent_sweepers_recover_each_run_once(
    sessionmaker: Sessionmaker, run_settings: Callable[..., Settings]
) -> None:
    settings = run_settings(run_max_attempts=3)
    expired = await make_run(sessionmaker, "worker died")
    undispatched = await make_run(sessionmaker, "never sent")
    await let_lease_lapse(sessionmaker, expired, "dead", max_attempts=3)
    holder = RecordingHolder(sessionmaker)

    sweepers = [RecoverySweep(sessionmaker, settings, holder) for _ in range(4)]
    reports = await asyncio.gather(*(sweeper.run_once() for sweeper in sweepers))

    assert sorted(map(str, holder.handed)) == sorted([str(expired), str(undispatched)])
    assert sum(len(report.requeued) for report in reports) == 1
    run = await load_run(sessionmaker, expired)
    assert (run.status, run.lease_owner, run.attempts) == ("queued", None, 1)
    assert await statuses(sessionmaker, expired) == ["running", "queued"]


async def test_the_sweep_fails_an_expired_run_out_of_attempts(
    sessionmaker: Sessionmaker, run_settings: Callable[..., Settings]
) -> None:
    run_id = await make_run(sessionmaker)
    await let_lease_lapse(sessionmaker, run_id, "dead", max_attempts=1)
    holder = RecordingHolder(sessionmaker)

    report = await RecoverySweep(sessionmaker, run_settings(run_max_attempts=1), holder).run_once()

    assert (report.failed, report.requeued, holder.handed) == ([run_id], [], [])
    run = await load_run(sessionmaker, run_id)
    assert (run.status, run.stop_reason, run.lease_owner) == ("failed", "internal_error", None)
    assert await statuses(sessionmaker, run_id) == ["running", "failed"]


async def test_the_sweep_leaves_alone_runs_its_own_process_is_executing(
    sessionmaker: Sessionmaker, run_settings: Callable[..., Settings]
) -> None:
    """A stalled event loop can let a lease lapse; the process knows its own runs are alive."""
    run_id = await make_run(sessionmaker)
    await let_lease_lapse(sessionmaker, run_id, "me", max_attempts=3)
    holder = RecordingHolder(sessionmaker)

    own = RecoverySweep(sessionmaker, run_settings(), holder, executing={run_id})
    assert (await own.run_once()).requeued == []
    assert (await load_run(sessionmaker, run_id)).lease_owner == "me"
    other = RecoverySweep(sessionmaker, run_settings(), holder)
    assert (await other.run_once()).requeued == [run_id]


async def _expire(sessionmaker: Sessionmaker, count: int, owner: str) -> list[uuid.UUID]:
    """`count` runs left running by `owner` under leases that expired a minute ago."""
    run_ids = [await make_run(sessionmaker, f"run {n}") for n in range(count)]
    lapsed = datetime.now(UTC) - timedelta(minutes=1)
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(Run)
            .where(Run.id.in_(run_ids))
            .values(status=RunStatus.RUNNING, lease_owner=owner, lease_expires_at=lapsed, attempts=1)
        )
    return run_ids


class CountingHolder(RecordingHolder):
    """Records, at the first hand-over, how many runs were still running."""

    def __init__(self, sessionmaker: Sessionmaker) -> None:
        super().__init__(sessionmaker)
        self.running_at_first_hand_over: int | None = None

    async def hand_over(self, run_id: uuid.UUID) -> bool:
        if self.running_at_first_hand_over is None:
            async with self.sessionmaker() as session:
                statement = select(func.count()).where(Run.status == RunStatus.RUNNING)
                self.running_at_first_hand_over = int(await session.scalar(statement) or 0)
        return await super().hand_over(run_id)


async def test_one_sweep_requeues_every_expired_run_beyond_a_batch_before_handing_any_over(
    sessionmaker: Sessionmaker, run_settings: Callable[..., Settings]
) -> None:
    """A worker that died with more runs than a batch: all back in the queue in one pass."""
    run_ids = await _expire(sessionmaker, BATCH + 30, "dead")
    holder = CountingHolder(sessionmaker)

    report = await RecoverySweep(sessionmaker, run_settings(), holder).run_once()

    assert sorted(report.requeued) == sorted(run_ids)
    assert sorted(holder.handed) == sorted(run_ids)
    assert holder.running_at_first_hand_over == 0
    async with sessionmaker() as session:
        rows = (await session.execute(select(Run.status, Run.attempts).where(Run.id.in_(run_ids)))).all()
    assert {tuple(row) for row in rows} == {("queued", 1)}


async def test_a_full_batch_of_its_own_runs_does_not_keep_the_sweep_going(
    sessionmaker: Sessionmaker, run_settings: Callable[..., Settings]
) -> None:
    """Expired leases of runs this process executes are skipped; the pass still ends."""
    own = await _expire(sessionmaker, BATCH, "me")
    holder = RecordingHolder(sessionmaker)

    sweep = RecoverySweep(sessionmaker, run_settings(), holder, executing=set(own))
    report = await asyncio.wait_for(sweep.run_once(), timeout=30)

    assert (report.requeued, report.failed, holder.handed) == ([], [], [])


async def test_serve_executes_runs_with_the_real_agent_loop(
    database_url: str, make_settings: Callable[..., Settings], sessionmaker: Sessionmaker
) -> None:
    """The app lifespan starts the runner (inprocess is the SQLite default; forced on PostgreSQL)."""
    app = create_app(make_settings(database_url=database_url, run_execution="inprocess"))
    async with LifespanManager(app):
        run_id = await make_run(
            sessionmaker, "What is (2+3)*4?", tools=[{"name": "calculator", "settings": {}}]
        )
        await app.state.run_queue.dispatch(run_id)
        done = await wait_for_status(sessionmaker, run_id, RunStatus.COMPLETED, within=60)
    assert done.output == "calculator: 20"
    assert done.input_tokens > 0
    kinds = [event.kind for event in await events(sessionmaker, run_id)]
    assert kinds[0] == kinds[-1] == "status"
    assert {"model_request", "model_response", "tool_call", "tool_result", "output"} <= set(kinds)
