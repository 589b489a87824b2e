"""Run gauges on GET /metrics come from the database, so every process reports the same."""

from __future__ import annotations

import re

import httpx
import pytest

from agentkeep.runs.states import RunStatus
from tests.worker.helpers import Sessionmaker, make_run


def _sample(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.MULTILINE)
    assert match is not None, f"{name} missing"
    return float(match.group(1))


async def test_metrics_report_runs_by_status_and_queue_depth(
    client: httpx.AsyncClient, sessionmaker: Sessionmaker
) -> None:
    for status in (RunStatus.COMPLETED, RunStatus.COMPLETED, RunStatus.FAILED):
        await make_run(sessionmaker, "done", status=status)

    text = (await client.get("/metrics")).text

    assert _sample(text, 'agentkeep_runs{status="completed"}') == 2
    assert _sample(text, 'agentkeep_runs{status="failed"}') == 1
    assert _sample(text, 'agentkeep_runs{status="timed_out"}') == 0
    assert "agentkeep_run_queue_depth" in text
    assert "# TYPE agentkeep_run_duration_seconds histogram" in text
    assert "# TYPE agentkeep_runs_finished_total counter" in text


async def test_queue_depth_counts_runs_waiting_for_a_worker(
    backend: str, client: httpx.AsyncClient, sessionmaker: Sessionmaker
) -> None:
    if backend == "sqlite":
        pytest.skip("on SQLite serve executes runs itself, so none waits for long")
    for n in range(2):
        await make_run(sessionmaker, f"waiting {n}")  # serve only dispatches on PostgreSQL
    text = (await client.get("/metrics")).text
    assert _sample(text, "agentkeep_run_queue_depth") == 2
    assert _sample(text, 'agentkeep_runs{status="queued"}') == 2
