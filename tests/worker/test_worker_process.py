"""Real `agentkeep worker` processes on PostgreSQL: killed mid-run, stopped with SIGTERM.

The runs execute the real agent loop on the offline `test` model, which calls `http_get`
on the URL in the input: a local HTTP server that answers slowly keeps each run busy for a
few seconds, long enough to kill or stop its worker in the middle.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agentkeep.config import Settings
from agentkeep.db.engine import create_engine, create_sessionmaker
from agentkeep.runs.models import Run
from agentkeep.runs.states import RunStatus
from agentkeep.worker.jobqueue import JobRunQueue, create_job_app
from tests.support.processes import run_agentkeep
from tests.worker.helpers import (
    assert_gap_free,
    events,
    load_run,
    make_run,
    statuses,
    wait_for,
    wait_for_status,
)

pytestmark = pytest.mark.slow

SLOW_SECONDS = 3.0
LEASE_SECONDS = 2


class SlowServer:
    """Answers every GET after SLOW_SECONDS; counts the requests that arrived."""

    def __init__(self) -> None:
        hits = self.hits = threading.Semaphore(0)
        self.count = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.count += 1
                hits.release()
                time.sleep(SLOW_SECONDS)
                body = b"slow answer"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(OSError):
                    self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    async def wait_for_request(self, within: float = 60) -> None:
        assert await asyncio.to_thread(self.hits.acquire, timeout=within), (
            "no request reached the slow server"
        )


@pytest.fixture
def slow_server() -> Iterator[SlowServer]:
    server = SlowServer()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def worker_env(fresh_database: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    env.update(
        {
            "JWT_SECRET": secrets.token_urlsafe(48),
            "DATABASE_URL": fresh_database,
            "RUN_LEASE_SECONDS": str(LEASE_SECONDS),
            "RUN_CONCURRENCY": "2",
            "LOG_LEVEL": "INFO",
            "LOG_FORMAT": "json",  # as in production; the secret scan reads these logs
        }
    )
    return env


@pytest.fixture
async def sessionmaker(
    fresh_database: str, make_settings: Callable[..., Settings]
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(make_settings(database_url=fresh_database))
    yield create_sessionmaker(engine)
    await engine.dispose()


def _cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_agentkeep(*args, env=env, cwd=cwd, timeout=120)


@contextlib.contextmanager
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


async def _migrate_and_make_run(
    env: dict[str, str], tmp_path: Path, sessionmaker: async_sessionmaker[AsyncSession], port: int
) -> Any:
    migrated = _cli(["migrate"], env, tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    assert "job queue schema created" in migrated.stderr
    again = _cli(["migrate"], env, tmp_path)
    assert again.returncode == 0, again.stderr
    assert "job queue schema created" not in again.stderr
    tools = [{"name": "http_get", "settings": {"allowed_hosts": ["127.0.0.1"], "timeout_seconds": 20}}]
    return await make_run(sessionmaker, f"Please fetch http://127.0.0.1:{port}/report now", tools=tools)


async def _dispatch(env: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession], run_id: Any) -> None:
    """What the API does once the run is committed."""
    settings = Settings(_env_file=None, database_url=env["DATABASE_URL"], jwt_secret=env["JWT_SECRET"])
    app = create_job_app(settings, max_size=1)
    async with app.open_async():
        await JobRunQueue(app, sessionmaker).dispatch(run_id)


async def _running_anywhere(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).where(Run.status == RunStatus.RUNNING)) or 0)


async def test_a_killed_worker_s_run_is_recovered_by_another_worker(
    worker_env: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    slow_server: SlowServer,
    tmp_path: Path,
) -> None:
    run_id = await _migrate_and_make_run(worker_env, tmp_path, sessionmaker, slow_server.port)
    await _dispatch(worker_env, sessionmaker, run_id)

    with worker_process(worker_env, tmp_path / "first.log") as first:
        await slow_server.wait_for_request()  # the run is inside its http_get call
        running = await load_run(sessionmaker, run_id)
        assert (running.status, running.attempts) == ("running", 1)
        assert running.lease_owner is not None
        assert f":{first.pid}:" in running.lease_owner
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=10) == -signal.SIGKILL
    # Killed: nothing was recorded, the run still claims to be running under a dead lease.
    assert (await load_run(sessionmaker, run_id)).status == "running"

    with worker_process(worker_env, tmp_path / "second.log") as second:
        done = await wait_for_status(sessionmaker, run_id, RunStatus.COMPLETED, within=60)
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0, (tmp_path / "second.log").read_text()

    assert (done.attempts, done.stop_reason, done.lease_owner, done.lease_expires_at) == (
        2,
        "end_turn",
        None,
        None,
    )
    assert done.output is not None
    assert "slow answer" in done.output or "http_get" in done.output
    assert done.input_tokens > 0
    assert slow_server.count == 2
    rows = await events(sessionmaker, run_id)
    assert_gap_free(rows)
    assert await statuses(sessionmaker, run_id) == ["running", "queued", "running", "completed"]
    assert [event.data.get("attempt") for event in rows if event.kind == "status"] == [1, None, 2, None]
    assert await _running_anywhere(sessionmaker) == 0


async def test_sigterm_hands_the_run_back_and_the_worker_exits_cleanly(
    worker_env: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    slow_server: SlowServer,
    tmp_path: Path,
) -> None:
    env = {**worker_env, "SHUTDOWN_TIMEOUT_SECONDS": "1"}
    run_id = await _migrate_and_make_run(env, tmp_path, sessionmaker, slow_server.port)
    await _dispatch(env, sessionmaker, run_id)

    with worker_process(env, tmp_path / "stopped.log") as stopped:
        await slow_server.wait_for_request()
        asked = time.monotonic()
        stopped.send_signal(signal.SIGTERM)
        assert stopped.wait(timeout=30) == 0, (tmp_path / "stopped.log").read_text()
        assert time.monotonic() - asked < SLOW_SECONDS + 5
    handed_back = await load_run(sessionmaker, run_id)
    assert (handed_back.status, handed_back.attempts, handed_back.lease_owner) == ("queued", 0, None)

    with worker_process(env, tmp_path / "next.log") as successor:
        done = await wait_for_status(sessionmaker, run_id, RunStatus.COMPLETED, within=60)
        successor.send_signal(signal.SIGTERM)
        assert successor.wait(timeout=30) == 0
    assert done.attempts == 1
    assert await statuses(sessionmaker, run_id) == ["running", "queued", "running", "completed"]
    assert_gap_free(await events(sessionmaker, run_id))


async def test_an_idle_worker_stops_at_once_on_sigterm(worker_env: dict[str, str], tmp_path: Path) -> None:
    assert _cli(["migrate"], worker_env, tmp_path).returncode == 0
    with worker_process(worker_env, tmp_path / "idle.log") as idle:
        log = tmp_path / "idle.log"

        async def started() -> bool:
            return "worker_started" in log.read_text()

        await wait_for(started, within=60)
        idle.send_signal(signal.SIGTERM)
        try:
            code = idle.wait(timeout=15)
        except subprocess.TimeoutExpired:
            code = None
        assert code == 0, log.read_text()


def test_the_worker_refuses_to_start_on_sqlite(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    env.update(
        {"JWT_SECRET": secrets.token_urlsafe(48), "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'a.db'}"}
    )
    result = _cli(["worker"], env, tmp_path)
    assert result.returncode == 78
    assert "runs execute inside `agentkeep serve`" in result.stderr
