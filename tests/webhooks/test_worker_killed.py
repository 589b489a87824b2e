"""A real `agentkeep worker` killed (SIGKILL) after a run's end committed and while its
webhook was being delivered: another worker delivers it, and the receiver, deduplicating by
`webhook-id`, sees exactly one event. PostgreSQL only (workers need the job queue)."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agentkeep.config import Settings
from agentkeep.db.engine import create_engine, create_sessionmaker
from agentkeep.orgs.models import Organization
from agentkeep.runs.states import RunStatus
from agentkeep.security.secretbox import SecretBox, generate_key
from agentkeep.webhooks.models import Webhook, WebhookDelivery
from agentkeep.webhooks.signing import new_secret
from agentkeep.worker.jobqueue import JobRunQueue, create_job_app
from tests.support.processes import run_agentkeep
from tests.support.timing import eventually
from tests.webhooks.conftest import Receiver
from tests.worker.conftest import fresh_database  # noqa: F401 (a fixture)
from tests.worker.helpers import make_run, wait_for_status

pytestmark = pytest.mark.slow

TIMEOUT_SECONDS = 2


@pytest.fixture
def worker_env(fresh_database: str) -> dict[str, str]:  # noqa: F811 (the fixture above)
    env = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    env.update(
        {
            "JWT_SECRET": secrets.token_urlsafe(48),
            "DATABASE_URL": fresh_database,
            "SECRETS_ENCRYPTION_KEYS": generate_key(),
            "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1",
            "WEBHOOK_TIMEOUT_SECONDS": str(TIMEOUT_SECONDS),
            "WEBHOOK_SWEEP_SECONDS": "0.5",
            "RUN_CONCURRENCY": "2",
            "LOG_FORMAT": "json",
        }
    )
    return env


@pytest.fixture
async def sessionmaker(worker_env: dict[str, str]) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    settings = Settings(
        _env_file=None, database_url=worker_env["DATABASE_URL"], jwt_secret=worker_env["JWT_SECRET"]
    )
    engine = create_engine(settings)
    yield create_sessionmaker(engine)
    await engine.dispose()


@contextmanager
def worker_process(env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "agentkeep", "worker"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)


async def test_a_worker_killed_mid_delivery_still_delivers_one_logical_event(
    worker_env: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    migrated = run_agentkeep("migrate", env=worker_env, cwd=tmp_path, timeout=120)
    assert migrated.returncode == 0, migrated.stderr
    secret = new_secret()
    box = SecretBox(worker_env["SECRETS_ENCRYPTION_KEYS"].split(","))
    async with sessionmaker() as session, session.begin():
        org = Organization(name="acme", slug=f"acme-{secrets.token_hex(3)}")
        session.add(org)
        await session.flush()
        now = datetime.now(UTC)
        session.add(
            Webhook(
                org_id=org.id,
                url=receiver.url(),
                description="",
                events=["run.completed"],
                include_content=False,
                enabled=True,
                consecutive_failures=0,
                secret_ciphertext=box.encrypt(secret),
                version=1,
                created_at=now,
                updated_at=now,
            )
        )
        org_id = org.id
    # The first request is held far longer than the worker lives.
    receiver.control(secrets=[secret], hold=60)
    run_id = await make_run(sessionmaker, org_id=org_id)
    settings = Settings(
        _env_file=None, database_url=worker_env["DATABASE_URL"], jwt_secret=worker_env["JWT_SECRET"]
    )
    job_app = create_job_app(settings, max_size=1)
    async with job_app.open_async():
        await JobRunQueue(job_app, sessionmaker).dispatch(run_id)

    with worker_process(worker_env, tmp_path / "first.log") as first:
        await wait_for_status(sessionmaker, run_id, RunStatus.COMPLETED, within=60)

        async def arrived() -> bool:
            return len(receiver.received()) >= 1

        assert await eventually(arrived, within=60)
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=10) == -signal.SIGKILL
    async with sessionmaker() as session:
        (delivery,) = (await session.scalars(select(WebhookDelivery))).all()
    assert delivery.status == "pending"  # the attempt's answer was never recorded

    with worker_process(worker_env, tmp_path / "second.log") as second:

        async def delivered() -> bool:
            async with sessionmaker() as session:
                row = (await session.scalars(select(WebhookDelivery))).one()
            return row.status == "succeeded"

        assert await eventually(delivered, within=60), (tmp_path / "second.log").read_text()

        # The killed worker's job, still `doing` in the queue, is deleted once procrastinate
        # reports it stalled (its worker silent for 30 s); the delivery had its own job.
        async def no_stalled_job() -> bool:
            async with sessionmaker() as session:
                left = await session.scalar(
                    text("SELECT count(*) FROM procrastinate_jobs WHERE queue_name = 'webhooks'")
                )
            return bool(left == 0)

        assert await eventually(no_stalled_job, within=90), (tmp_path / "second.log").read_text()
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0

    requests = receiver.received()
    assert len(requests) == 2  # the killed attempt's request, and the one that was answered
    assert all(r["verified"] == [True] for r in requests)
    events = {(r["headers"]["webhook-id"], json.loads(r["body"])["type"]) for r in requests}
    assert len(events) == 1
    ((_, event_type),) = events
    assert event_type == "run.completed"
    assert json.loads(requests[1]["body"])["data"]["run_id"] == str(run_id)
