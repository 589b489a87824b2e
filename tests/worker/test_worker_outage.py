"""A real `agentkeep worker` through PostgreSQL outages: it neither crashes nor loses runs.

The worker runs on its own throwaway PostgreSQL, executing runs of the real agent loop on
the offline `test` model; some call `http_get` on a slow local server, so they are in the
middle of executing when the database is stopped (immediate shutdown) or frozen (SIGSTOP).
Runs created before the fault and after recovery must all complete, the worker process must
still be running afterwards, stop cleanly on SIGTERM, and log no traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agentkeep.config import Settings
from agentkeep.db.engine import create_engine, create_sessionmaker
from agentkeep.runs.models import Run
from agentkeep.worker.jobqueue import JobRunQueue, create_job_app
from tests.support.throwaway import ThrowawayPostgres, running_postgres
from tests.worker.helpers import make_run, wait_for
from tests.worker.test_worker_process import SlowServer, worker_process
from tests.worker.test_worker_process import slow_server as slow_server

# Recovery includes waiting out leases and the sweep's re-dispatch delay (see below).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

LEASE_SECONDS = 3
DOWN_SECONDS = 4.0
# Small bounds for a database that does not answer (defaults: 30 s command and pool, 3 s
# connect), so that the frozen worker notices within the test's time.
FROZEN_BOUNDS = {"DB_COMMAND_TIMEOUT": "2", "DB_POOL_TIMEOUT": "2", "DB_CONNECT_TIMEOUT": "2"}
# After recovery a run may wait for its lease to expire (RUN_LEASE_SECONDS), a sweep (at most
# 5 s) and, when its job was lost, the sweep's re-dispatch of stale runs (30 s); then it runs
# again (the slow tool takes 3 s). Generous for a loaded host.
COMPLETION_SECONDS = 120.0
Sessionmaker = async_sessionmaker[AsyncSession]


@pytest.fixture
def postgres() -> Iterator[ThrowawayPostgres]:
    with running_postgres() as server:
        yield server


@pytest.fixture
def env(postgres: ThrowawayPostgres) -> dict[str, str]:
    values = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    values.update(
        {
            "JWT_SECRET": secrets.token_urlsafe(48),
            "DATABASE_URL": postgres.url,
            "RUN_LEASE_SECONDS": str(LEASE_SECONDS),
            "RUN_CONCURRENCY": "4",
            "LOG_LEVEL": "INFO",
            **FROZEN_BOUNDS,
        }
    )
    return values


@pytest.fixture
async def sessions(env: dict[str, str], tmp_path: Path) -> AsyncIterator[Sessionmaker]:
    migrated = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "agentkeep", "migrate"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        timeout=120,
    )
    assert migrated.returncode == 0, migrated.stderr
    engine = create_engine(
        Settings(_env_file=None, database_url=env["DATABASE_URL"], jwt_secret=env["JWT_SECRET"])
    )
    yield create_sessionmaker(engine)
    await engine.dispose()


async def _create_and_dispatch(
    env: dict[str, str], sessions: Sessionmaker, inputs: list[str]
) -> list[uuid.UUID]:
    """Runs created and dispatched as the API does (commit, then one job each)."""
    tools = [{"name": "http_get", "settings": {"allowed_hosts": ["127.0.0.1"], "timeout_seconds": 20}}]
    run_ids = [await make_run(sessions, text, tools=tools) for text in inputs]
    settings = Settings(_env_file=None, database_url=env["DATABASE_URL"], jwt_secret=env["JWT_SECRET"])
    app = create_job_app(settings, max_size=1)
    async with app.open_async():
        for run_id in run_ids:
            await JobRunQueue(app, sessions).dispatch(run_id)
    return run_ids


def _inputs(port: int, slow: int, quick: int) -> list[str]:
    return [f"Please fetch http://127.0.0.1:{port}/report now" for _ in range(slow)] + [
        "Say hello" for _ in range(quick)
    ]


async def _final_statuses(
    sessions: Sessionmaker, run_ids: list[uuid.UUID]
) -> dict[uuid.UUID, tuple[str, int]]:
    async with sessions() as session:
        rows = await session.execute(select(Run.id, Run.status, Run.attempts).where(Run.id.in_(run_ids)))
        return {row.id: (row.status, row.attempts) for row in rows}


async def _wait_until_completed(
    sessions: Sessionmaker, run_ids: list[uuid.UUID]
) -> dict[uuid.UUID, tuple[str, int]]:
    async def all_finished() -> bool:
        statuses = await _final_statuses(sessions, run_ids)
        return all(
            status in {"completed", "failed", "cancelled", "timed_out"} for status, _ in statuses.values()
        )

    try:
        await wait_for(all_finished, within=COMPLETION_SECONDS, interval=0.5)
    except AssertionError:
        raise AssertionError(f"runs not finished: {await _final_statuses(sessions, run_ids)}") from None
    return await _final_statuses(sessions, run_ids)


def _assert_clean_exit(process: subprocess.Popen[bytes], log_path: Path) -> str:
    assert process.poll() is None, f"the worker exited: {log_path.read_text()[-5000:]}"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0, log_path.read_text()[-5000:]
    log = log_path.read_text()
    assert "Traceback" not in log, log[max(0, log.index("Traceback") - 1500) : log.index("Traceback") + 3000]
    return log


async def _through_fault(
    env: dict[str, str],
    sessions: Sessionmaker,
    slow: SlowServer,
    log_path: Path,
    fault: contextlib.AbstractContextManager[None],
) -> None:
    with worker_process(env, log_path) as process:
        before = await _create_and_dispatch(env, sessions, _inputs(slow.port, slow=2, quick=2))
        await slow.wait_for_request()  # a run is executing its tool call
        with fault:
            await asyncio.sleep(DOWN_SECONDS)
        after = await _create_and_dispatch(env, sessions, _inputs(slow.port, slow=1, quick=1))
        finished = await _wait_until_completed(sessions, before + after)
        assert {status for status, _ in finished.values()} == {"completed"}, finished
        print("attempts per run:", sorted(attempts for _, attempts in finished.values()))
        _assert_clean_exit(process, log_path)


@contextlib.contextmanager
def _fault(postgres: ThrowawayPostgres, kind: str) -> Iterator[None]:
    """An immediate stop then a start, or a SIGSTOP freeze then SIGCONT."""
    frozen = postgres.freeze() if kind == "freeze" else None
    if frozen is None:
        postgres.stop()
    try:
        yield
    finally:
        if frozen is None:
            postgres.start()
        else:
            postgres.thaw(frozen)


@pytest.mark.parametrize("kind", ["stop", "freeze"])
async def test_worker_survives_the_database_fault_and_completes_every_run(
    kind: str,
    env: dict[str, str],
    sessions: Sessionmaker,
    slow_server: SlowServer,
    postgres: ThrowawayPostgres,
    tmp_path: Path,
) -> None:
    await _through_fault(env, sessions, slow_server, tmp_path / "worker.log", _fault(postgres, kind))
