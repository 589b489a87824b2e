"""Seeding agents and runs straight into the database, and reading the audit trail.

Agents are written like the agents API writes them (a live row and its version 1). Runs are
seeded in the state a test needs (running under a live lease, finished with usage...), the
way the runner would leave them, so no runner picks them up meanwhile.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from agentkeep.agents.models import Agent, AgentVersion
from agentkeep.audit.models import AuditLog
from agentkeep.runs.models import Run
from agentkeep.runs.repository import append_event
from agentkeep.runs.states import EventKind, RunStatus
from tests.audit.conftest import wait_until_sealed

LIMITS = {"max_steps": 5, "max_output_tokens": 1000, "timeout_seconds": 60}


async def seed_agent(
    app: FastAPI,
    org_id: str,
    name: str = "helper",
    *,
    status: str = "active",
    archived: bool = False,
    version: int = 1,
) -> str:
    agent_id = uuid.uuid4()
    now = datetime.now(UTC)
    config = {"name": name, "model": "test", "system_prompt": "", "tools": [], "limits": LIMITS}
    async with app.state.sessionmaker() as session, session.begin():
        session.add(
            Agent(
                id=agent_id,
                org_id=uuid.UUID(org_id),
                name=name,
                model="test",
                tools=[],
                limits=LIMITS,
                status=status,
                version=version,
                archived_at=now if archived else None,
            )
        )
        await session.flush()
        session.add(
            AgentVersion(
                agent_id=agent_id,
                org_id=uuid.UUID(org_id),
                version=version,
                config={**config, "status": status},
            )
        )
    return str(agent_id)


async def seed_run(
    app: FastAPI,
    org_id: str,
    agent_id: str,
    *,
    status: RunStatus = RunStatus.RUNNING,
    input_tokens: int = 0,
    output_tokens: int = 0,
    created_at: datetime | None = None,
    events: list[tuple[EventKind, dict[str, Any]]] | None = None,
) -> str:
    """A run as a runner leaves it: running under a lease held far into the future, or
    finished; queued runs are marked just dispatched. `events` are appended in order."""
    now = datetime.now(UTC)
    run = Run(
        id=uuid.uuid4(),
        org_id=uuid.UUID(org_id),
        agent_id=uuid.UUID(agent_id),
        agent_version=1,
        input="seeded",
        status=status.value,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        requests=1 if input_tokens or output_tokens else 0,
        created_at=created_at or now,
        dispatched_at=now,
    )
    if status is RunStatus.RUNNING:
        run.attempts, run.started_at = 1, now
        run.lease_owner, run.lease_expires_at, run.heartbeat_at = "test", now + timedelta(hours=1), now
    elif status is not RunStatus.QUEUED:
        run.attempts, run.started_at, run.finished_at = 1, now, now
    async with app.state.sessionmaker() as session, session.begin():
        session.add(run)
        await session.flush()
        for kind, data in events or [(EventKind.STATUS, {"status": RunStatus.QUEUED.value})]:
            await append_event(session, run.id, kind, data)
    return str(run.id)


async def append(app: FastAPI, run_id: str, kind: EventKind, data: dict[str, Any]) -> int:
    """Append and commit one event, as the runner's event sink does."""
    async with app.state.sessionmaker() as session, session.begin():
        event = await append_event(session, uuid.UUID(run_id), kind, data)
        return event.seq


async def audit_rows(app: FastAPI, action: str) -> list[AuditLog]:
    """The `action` records in chain order, once the app's sealer has chained them all (an
    unsealed record has no sequence yet, so it would sort anywhere)."""
    await wait_until_sealed(app.state.sessionmaker)
    async with app.state.sessionmaker() as session:
        statement = select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.sequence)
        return list((await session.scalars(statement)).all())


async def start_run(
    http: httpx.AsyncClient, agent_id: str, headers: dict[str, str], text: str = "What is 6*7?"
) -> httpx.Response:
    return await http.post(f"/api/agents/{agent_id}/runs", json={"input": text}, headers=headers)
