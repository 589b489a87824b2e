"""A run paused for approval resumes on another `agentkeep worker` process (PostgreSQL): the
worker that ran it until the pause is stopped, the approval comes over HTTP, a second worker
continues the same run from its stored messages, and no tool is executed twice (the MCP
server counts its calls)."""

from __future__ import annotations

import contextlib
import secrets
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator

import httpx
import pytest
from fastapi import FastAPI

from agentkeep.config import Settings
from agentkeep.rbac.permissions import Role
from tests.approvals.helpers import create_agent, decide, register_servers, run_events, start, status_in
from tests.mcp.conftest import ALLOWED, McpTestServer
from tests.orgs.helpers import make_team
from tests.support.processes import clean_environment, process_log
from tests.worker.conftest import fresh_database, queue_database

__all__ = ["fresh_database", "queue_database"]

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("backend", ["postgres"], indirect=True)]


@pytest.fixture
def settings(
    backend: str, queue_database: str, make_settings: Callable[..., Settings], encryption_key: str
) -> Settings:
    """The API of this test: runs go to the job queue, `agentkeep worker` processes run them."""
    assert backend == "postgres"
    return make_settings(
        database_url=queue_database,
        run_execution="queue",
        rate_limit_auth="1000/minute",
        secrets_encryption_keys=encryption_key,
        mcp_allowed_networks=ALLOWED,
    )


@contextlib.contextmanager
def worker(settings: Settings, key: str, name: str) -> Iterator[subprocess.Popen[bytes]]:
    env = clean_environment(
        {
            "JWT_SECRET": secrets.token_urlsafe(48),
            "DATABASE_URL": settings.database_url,
            "SECRETS_ENCRYPTION_KEYS": key,
            "MCP_ALLOWED_NETWORKS": ALLOWED,
            "RUN_LEASE_SECONDS": "2",
            "LOG_LEVEL": "INFO",
            "LOG_FORMAT": "json",
        }
    )
    with process_log(name).open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "agentkeep", "worker"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=15)


async def test_a_paused_run_resumes_on_another_worker_and_no_tool_runs_twice(
    app: FastAPI,
    client: httpx.AsyncClient,
    settings: Settings,
    encryption_key: str,
    calc_server: McpTestServer,
    weather_server: McpTestServer,
) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    await register_servers(client, team.org_id, owner, calc_server, weather_server)
    agent = await create_agent(
        client, owner, [{"name": "mcp:calc/add"}, {"name": "mcp:calc/multiply", "approval": "never"}]
    )
    before = calc_server.stats()

    with worker(settings, encryption_key, "approvals-first-worker") as first:
        run_id = await start(
            client, owner, agent["id"], 'mcp:calc/multiply {"a": 6, "b": 7} mcp:calc/add {"a": 1, "b": 2}'
        )
        paused = await status_in(client, owner, run_id, {"requires_action"}, within=90)
        assert paused["attempts"] == 0  # released: no lease, no attempt in progress
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=30) == 0
    after_first = calc_server.stats()
    assert after_first.get("call:multiply", 0) - before.get("call:multiply", 0) == 1
    assert after_first.get("call:add", 0) - before.get("call:add", 0) == 0

    (call,) = [data for kind, data in await run_events(app, run_id) if kind == "approval_requested"]
    decided = await decide(
        client, owner, run_id, {"tool_call_id": call["tool_call_id"], "decision": "approve"}
    )
    assert decided.status_code == 200, decided.text
    assert (await client.get(f"/api/runs/{run_id}", headers=owner)).json()["status"] == "queued"

    with worker(settings, encryption_key, "approvals-second-worker") as second:
        done = await status_in(client, owner, run_id, {"completed", "failed"}, within=90)
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
    assert done["status"] == "completed", done
    assert sorted(done["output"].splitlines()) == ["mcp__calc__add: 3", "mcp__calc__multiply: 42"]
    after = calc_server.stats()
    assert after.get("call:multiply", 0) - before.get("call:multiply", 0) == 1
    assert after.get("call:add", 0) - before.get("call:add", 0) == 1
    events = await run_events(app, run_id)
    statuses = [data["status"] for kind, data in events if kind == "status"]
    assert statuses == ["queued", "running", "requires_action", "queued", "running", "completed"]
    assert [data["tool"] for kind, data in events if kind == "tool_call"] == [
        "mcp:calc/multiply",
        "mcp:calc/add",
    ]
