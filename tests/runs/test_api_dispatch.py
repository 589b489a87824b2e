"""A new run and its dispatch commit together.

On PostgreSQL the run's procrastinate job is written in the transaction that creates the
run: an accepted run always has exactly one job, a refused or rolled back one has none, and
a replay adds none. The job is the one procrastinate's own `defer` would write.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from procrastinate.jobs import Job
from sqlalchemy import select, text, update

from agentkeep.idempotency.models import IdempotencyKey
from agentkeep.rbac.permissions import Role
from agentkeep.runs.models import Run
from tests.orgs.helpers import make_team
from tests.runs.seeding import seed_agent, start_run

# What procrastinate stores for a job, besides its id and its run.
JOB_COLUMNS = "queue_name, task_name, priority, lock, status::text, scheduled_at, attempts, abort_requested"


def _postgres_only(backend: str) -> None:
    if backend == "sqlite":
        pytest.skip("on SQLite runs execute in serve: there is no job queue")


async def _jobs(app: FastAPI, run_id: str) -> list[Job]:
    """The run's jobs, as procrastinate itself lists them."""
    manager = app.state.run_queue.app.job_manager
    return list(await manager.list_jobs_async(queueing_lock=f"run:{run_id}"))


async def _job_row(app: FastAPI, run_id: uuid.UUID | str) -> dict[str, Any]:
    async with app.state.sessionmaker() as session:
        row = (
            await session.execute(
                text(f"SELECT {JOB_COLUMNS} FROM procrastinate_jobs WHERE queueing_lock = :lock"),  # noqa: S608
                {"lock": f"run:{run_id}"},
            )
        ).one()
    return dict(row._mapping)


async def test_an_accepted_run_is_committed_with_its_one_job(
    app: FastAPI, client: httpx.AsyncClient, backend: str
) -> None:
    _postgres_only(backend)
    team = await make_team(client)
    agent_id = await seed_agent(app, team.org_id)
    response = await start_run(client, agent_id, team.headers(Role.MEMBER))
    assert response.status_code == 202, response.text
    run_id = response.json()["id"]
    (job,) = await _jobs(app, run_id)
    assert (job.status, job.task_name, job.queue, job.task_kwargs) == (
        "todo",
        "agentkeep.execute_run",
        "runs",
        {"run_id": run_id},
    )
    async with app.state.sessionmaker() as session:
        run = await session.get(Run, uuid.UUID(run_id))
    assert run is not None
    assert run.dispatched_at is not None  # handed over: the sweep leaves it to its job
    # The same job as procrastinate's own defer writes for a run (the sweep's way).
    other_run = uuid.uuid4()
    assert await app.state.run_queue.hand_over(other_run)
    assert await _job_row(app, run_id) == await _job_row(app, other_run)


async def test_a_replay_adds_no_job(app: FastAPI, client: httpx.AsyncClient, backend: str) -> None:
    _postgres_only(backend)
    team = await make_team(client)
    agent_id = await seed_agent(app, team.org_id)
    headers = {**team.headers(Role.MEMBER), "Idempotency-Key": "once"}
    first = await start_run(client, agent_id, headers)
    again = await start_run(client, agent_id, headers)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert len(await _jobs(app, first.json()["id"])) == 1


async def test_a_thread_turn_is_committed_with_its_job(
    app: FastAPI, client: httpx.AsyncClient, backend: str
) -> None:
    _postgres_only(backend)
    team = await make_team(client)
    agent_id = await seed_agent(app, team.org_id)
    headers = team.headers(Role.MEMBER)
    thread = await client.post("/api/threads", json={"agent_id": agent_id}, headers=headers)
    assert thread.status_code == 201, thread.text
    path = f"/api/threads/{thread.json()['id']}/runs"
    turn = await client.post(path, json={"input": "hi"}, headers=headers)
    assert turn.status_code == 202, turn.text
    (job,) = await _jobs(app, turn.json()["id"])
    assert job.task_kwargs == {"run_id": turn.json()["id"]}


async def test_a_job_written_in_a_rolled_back_transaction_is_gone_with_it(
    app: FastAPI, client: httpx.AsyncClient, backend: str
) -> None:
    _postgres_only(backend)
    kept, dropped = uuid.uuid4(), uuid.uuid4()
    async with app.state.sessionmaker() as session:
        assert await app.state.run_queue.accept(session, dropped)
        await session.rollback()
    async with app.state.sessionmaker() as session, session.begin():
        assert await app.state.run_queue.accept(session, kept)
    assert await _jobs(app, str(dropped)) == []
    assert len(await _jobs(app, str(kept))) == 1


async def test_a_refused_run_leaves_no_job(app: FastAPI, client: httpx.AsyncClient, backend: str) -> None:
    _postgres_only(backend)
    team = await make_team(client)
    agent_id = await seed_agent(app, team.org_id, status="disabled")
    refused = await start_run(client, agent_id, team.headers(Role.MEMBER))
    assert refused.status_code == 409
    async with app.state.sessionmaker() as session:
        assert await session.scalar(text("SELECT count(*) FROM procrastinate_jobs")) == 0


async def test_an_expired_idempotency_key_starts_a_new_run(app: FastAPI, client: httpx.AsyncClient) -> None:
    team = await make_team(client)
    agent_id = await seed_agent(app, team.org_id)
    headers = {**team.headers(Role.MEMBER), "Idempotency-Key": "daily"}
    first = await start_run(client, agent_id, headers)
    assert first.status_code == 202
    # A key is kept 24 hours; age this one past that.
    async with app.state.sessionmaker() as session, session.begin():
        await session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.key == "daily")
            .values(created_at=datetime.now(UTC) - timedelta(hours=25))
        )
    again = await start_run(client, agent_id, headers)
    assert again.status_code == 202, again.text
    assert "idempotent-replayed" not in again.headers
    assert again.json()["id"] != first.json()["id"]
    replay = await start_run(client, agent_id, headers)
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json()["id"] == again.json()["id"]
    async with app.state.sessionmaker() as session:
        keys = (await session.scalars(select(IdempotencyKey).where(IdempotencyKey.key == "daily"))).all()
    assert [str(key.resource_id) for key in keys] == [again.json()["id"]]


async def test_runs_handed_over_together_get_the_job_procrastinates_own_defer_writes(
    app: FastAPI, client: httpx.AsyncClient, backend: str
) -> None:
    """The recovery sweep hands a dead worker's runs back in one statement: one job each,
    the same as procrastinate's defer writes, and none for a run whose job is waiting."""
    _postgres_only(backend)
    queue = app.state.run_queue
    waiting, reference = uuid.uuid4(), uuid.uuid4()
    assert await queue.hand_over(waiting)
    assert await queue.hand_over(reference)
    runs = [uuid.uuid4() for _ in range(5)]

    handed = await queue.hand_over_all([*runs, waiting])

    assert sorted(handed) == sorted([*runs, waiting])
    for run_id in runs:
        (job,) = await _jobs(app, str(run_id))
        assert job.task_kwargs == {"run_id": str(run_id)}
        assert await _job_row(app, run_id) == await _job_row(app, reference)
    assert len(await _jobs(app, str(waiting))) == 1
