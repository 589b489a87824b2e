"""A real `agentkeep worker` at INFO writes one line per run (docs/OPERATIONS.md, "Logs"),
however many model requests and queue jobs the run took.

Each run calls a local OpenAI-compatible server twice (a tool call, then the answer): the
HTTP client logs each request at INFO and the job queue each job's start and end, which
would be five more lines per run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agentkeep.config import Settings
from agentkeep.db.engine import create_engine, create_sessionmaker
from agentkeep.runs.states import RunStatus
from agentkeep.worker.jobqueue import JobRunQueue, create_job_app
from tests.support.chat_server import Step, running_chat_server, text_reply, tool_call_reply
from tests.support.processes import clean_environment, process_log, remember_credentials
from tests.support.timing import SCHEDULING_MARGIN_SECONDS
from tests.worker.helpers import Sessionmaker, make_run, wait_for_status

pytestmark = pytest.mark.slow

RUNS = 3
CALCULATOR = [{"name": "calculator", "settings": {}}]


def _two_calls() -> list[Step]:
    return [
        tool_call_reply([("call_a", "calculator", '{"expression": "(2+3)*4"}')]),
        text_reply("The answer is 20."),
    ]


@contextlib.contextmanager
def _worker(env: dict[str, str]) -> Iterator[Path]:
    log_path = process_log("agentkeep-worker")
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "agentkeep", "worker"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            yield log_path
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _events(log_path: Path) -> list[dict[str, Any]]:
    lines = log_path.read_text(errors="replace").splitlines()
    return [json.loads(line) if line.startswith("{") else {"event": line} for line in lines]


async def _wait_for_ended(log_path: Path, count: int) -> list[dict[str, Any]]:
    """The worker's log once it holds `count` run_ended events (they follow the final commit)."""
    deadline = time.monotonic() + SCHEDULING_MARGIN_SECONDS
    while True:
        events = _events(log_path)
        if sum(event["event"] == "run_ended" for event in events) >= count or time.monotonic() > deadline:
            return events
        await asyncio.sleep(0.05)


async def _run_to_completion(queue: JobRunQueue, sessionmaker: Sessionmaker, count: int) -> list[uuid.UUID]:
    run_ids = [
        await make_run(sessionmaker, "What is (2+3)*4?", tools=CALCULATOR, model="openai:local-model")
        for _ in range(count)
    ]
    for run_id in run_ids:
        await queue.dispatch(run_id)
    for run_id in run_ids:
        await wait_for_status(sessionmaker, run_id, RunStatus.COMPLETED, within=60)
    return run_ids


async def test_a_worker_at_info_logs_one_line_per_run(
    queue_database: str, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(database_url=queue_database)
    engine = create_engine(settings)
    sessionmaker = create_sessionmaker(engine)
    job_app = create_job_app(settings, max_size=1)
    script = [step for _ in range(1 + RUNS) for step in _two_calls()]
    try:
        with running_chat_server(script) as chat:
            env = clean_environment(
                {
                    "JWT_SECRET": settings.jwt_secret.get_secret_value(),
                    "DATABASE_URL": queue_database,
                    "LOG_LEVEL": "INFO",
                    "LOG_FORMAT": "json",
                    # One run at a time, so each takes the next two scripted answers.
                    "RUN_CONCURRENCY": "1",
                    "OPENAI_BASE_URL": chat.base_url,
                    "OPENAI_API_KEY": "local-" + secrets.token_hex(16),
                }
            )
            remember_credentials((), env)
            async with job_app.open_async():
                queue = JobRunQueue(job_app, sessionmaker)
                with _worker(env) as log_path:
                    # A first run: whatever a worker logs once (starting, first model client)
                    # is behind us when it has ended.
                    await _run_to_completion(queue, sessionmaker, 1)
                    before = len(await _wait_for_ended(log_path, 1))
                    run_ids = await _run_to_completion(queue, sessionmaker, RUNS)
                    during = (await _wait_for_ended(log_path, 1 + RUNS))[before:]
            assert len(chat.requests) == 2 * (1 + RUNS)  # every run made its two model calls
    finally:
        await engine.dispose()

    lines = [(event["event"], event.get("status")) for event in during]
    assert lines == [("run_ended", "completed")] * RUNS, during
    assert sorted(event["run_id"] for event in during) == sorted(str(run_id) for run_id in run_ids)
