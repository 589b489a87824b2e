"""Runs written straight into the database, executors for lease tests, and polling helpers."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import JsonValue
from sqlalchemy import Select, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agentkeep.agents.models import Agent, AgentVersion
from agentkeep.orgs.models import Organization
from agentkeep.runs.contract import EventSink, RunOutcome, RunRequest, Transcript, Usage
from agentkeep.runs.models import Run, RunEvent
from agentkeep.runs.states import EventKind, RunStatus, StopReason
from agentkeep.tools.context import ToolContext
from agentkeep.worker import leases

Sessionmaker = async_sessionmaker[AsyncSession]
LIMITS = {"max_steps": 5, "max_output_tokens": 2000, "timeout_seconds": 60}


async def make_run(
    sessionmaker: Sessionmaker,
    run_input: str = "hello",
    *,
    tools: list[dict[str, Any]] | None = None,
    org_id: uuid.UUID | None = None,
    status: RunStatus = RunStatus.QUEUED,
    model: str = "test",
) -> uuid.UUID:
    """An organization, an agent (on the offline `test` model by default), its version 1, and a run."""
    async with sessionmaker() as session, session.begin():
        if org_id is None:
            slug = f"org-{secrets.token_hex(4)}"
            org = Organization(name=slug, slug=slug)
            session.add(org)
            await session.flush()
            org_id = org.id
        config = {
            "name": "helper",
            "description": "",
            "model": model,
            "system_prompt": "Be brief.",
            "tools": tools or [],
            "limits": LIMITS,
            "status": "active",
        }
        agent = Agent(
            org_id=org_id,
            name=f"agent-{secrets.token_hex(4)}",
            model=model,
            system_prompt="Be brief.",
            tools=tools or [],
            limits=LIMITS,
        )
        session.add(agent)
        await session.flush()
        session.add(AgentVersion(agent_id=agent.id, org_id=org_id, version=1, config=config))
        run = Run(org_id=org_id, agent_id=agent.id, agent_version=1, input=run_input, status=status)
        session.add(run)
        await session.flush()
        return run.id


async def let_lease_lapse(
    sessionmaker: Sessionmaker, run_id: uuid.UUID, owner: str, max_attempts: int
) -> None:
    """Claim the run for `owner` with a 0.1 s lease, then wait until it has expired."""
    async with sessionmaker() as session, session.begin():
        now = datetime.now(UTC)
        await leases.claim(session, run_id, owner, now=now, lease_seconds=0.1, max_attempts=max_attempts)
    await asyncio.sleep(0.2)


async def load_run(sessionmaker: Sessionmaker, run_id: uuid.UUID) -> Run:
    async with sessionmaker() as session:
        run = await session.get(Run, run_id)
        assert run is not None
        return run


async def events(sessionmaker: Sessionmaker, run_id: uuid.UUID) -> list[RunEvent]:
    async with sessionmaker() as session:
        rows = await session.scalars(select(RunEvent).where(RunEvent.run_id == run_id).order_by(RunEvent.seq))
        return list(rows.all())


async def statuses(sessionmaker: Sessionmaker, run_id: uuid.UUID) -> list[str]:
    return [
        str(event.data["status"]) for event in await events(sessionmaker, run_id) if event.kind == "status"
    ]


def assert_gap_free(rows: list[RunEvent]) -> None:
    assert [event.seq for event in rows] == list(range(1, len(rows) + 1))


async def set_run(sessionmaker: Sessionmaker, run_id: uuid.UUID, **values: Any) -> None:
    async with sessionmaker() as session, session.begin():
        await session.execute(update(Run).where(Run.id == run_id).values(**values))


class RecordingHolder:
    """A holder of runs that holds none: it records what the sweep hands over and accepts it."""

    def __init__(self, sessionmaker: Sessionmaker) -> None:
        self.sessionmaker = sessionmaker
        self.handed: list[uuid.UUID] = []

    async def hand_over(self, run_id: uuid.UUID) -> bool:
        self.handed.append(run_id)
        return True

    async def hand_over_all(self, run_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
        return [run_id for run_id in run_ids if await self.hand_over(run_id)]

    async def tend(self, *, now: datetime, stale_before: datetime) -> list[uuid.UUID]:
        return []

    async def lost(self, candidates: Select[uuid.UUID]) -> list[uuid.UUID]:
        async with self.sessionmaker() as session:
            return list((await session.scalars(candidates)).all())


async def wait_for(
    check: Callable[[], Awaitable[bool]], within: float = 20.0, interval: float = 0.05
) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(interval)


async def wait_for_status(
    sessionmaker: Sessionmaker, run_id: uuid.UUID, status: RunStatus, within: float = 20.0
) -> Run:
    async def reached() -> bool:
        return (await load_run(sessionmaker, run_id)).status == status

    await wait_for(reached, within)
    return await load_run(sessionmaker, run_id)


class ScriptedExecutor:
    """Stands in for the agent loop in lease tests: emits a step, waits, then completes.

    `release` lets the test decide when the attempt ends; `started` is set once it runs.
    """

    def __init__(self, *, hold: bool = False, seconds: float = 0.0) -> None:
        self.hold = hold
        self.seconds = seconds
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.calls = 0

    async def __call__(
        self,
        request: RunRequest,
        sink: EventSink,
        *,
        tool_context: ToolContext | None = None,
        transcript: Transcript | None = None,
    ) -> RunOutcome:
        self.calls += 1
        await sink.emit(EventKind.MODEL_REQUEST, {"step": 1})
        self.started.set()
        if self.hold:
            await self.release.wait()
        await asyncio.sleep(self.seconds)
        usage: dict[str, JsonValue] = {"input_tokens": 11, "output_tokens": 7}
        await sink.emit(
            EventKind.MODEL_RESPONSE, {"step": 1, "text": "done", "tool_calls": [], "usage": usage}
        )
        await sink.emit(EventKind.OUTPUT, {"text": f"done: {request.input}"})
        return RunOutcome(
            RunStatus.COMPLETED,
            StopReason.END_TURN,
            output=f"done: {request.input}",
            usage=Usage(requests=1, input_tokens=11, output_tokens=7),
        )
