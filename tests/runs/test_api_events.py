"""GET /api/runs/{id}/events: Server-Sent Events replayed, resumed and followed live."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from agentkeep.rbac.permissions import Role
from agentkeep.runs.models import RunEvent
from agentkeep.runs.states import EventKind, RunStatus
from agentkeep.runs.stream import StreamTiming
from tests.orgs.helpers import Team, make_team
from tests.runs.seeding import append, seed_agent, seed_run

FAST = StreamTiming(keepalive_seconds=0.3)
HISTORY: list[tuple[EventKind, dict[str, Any]]] = [
    (EventKind.STATUS, {"status": "queued"}),
    (EventKind.STATUS, {"status": "running", "attempt": 1}),
    (EventKind.MODEL_REQUEST, {"step": 1}),
]


@dataclass
class Event:
    id: str | None
    event: str | None
    data: Any


async def _frames(response: httpx.Response) -> AsyncIterator[Event | str]:
    """Parse the stream: an Event per event, the text of each comment line."""
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line.startswith(":"):
            yield line[1:].strip()
        elif line == "":
            if fields:
                yield Event(fields.get("id"), fields.get("event"), json.loads(fields.get("data", "null")))
                fields = {}
        else:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


async def _running_run(app: FastAPI, client: httpx.AsyncClient) -> tuple[Team, str]:
    """A team and a run of theirs that has started, its stream polled fast."""
    app.state.run_stream_timing = FAST
    team = await make_team(client)
    return team, await seed_run(app, team.org_id, await seed_agent(app, team.org_id), events=HISTORY[:2])


async def _read_all(response: httpx.Response) -> list[Event]:
    return [frame async for frame in _frames(response) if isinstance(frame, Event)]


async def test_a_finished_run_is_replayed_and_resumed_then_the_stream_ends(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    team = await make_team(client)
    agent_id = await seed_agent(app, team.org_id)
    history = [*HISTORY, (EventKind.OUTPUT, {"text": "42"}), (EventKind.STATUS, {"status": "completed"})]
    run_id = await seed_run(app, team.org_id, agent_id, status=RunStatus.COMPLETED, events=history)
    path, headers = f"/api/runs/{run_id}/events", team.headers(Role.VIEWER)
    async with client.stream("GET", path, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        events = await _read_all(response)
    assert [(event.id, event.event, event.data) for event in events] == [
        (str(seq), kind.value, data) for seq, (kind, data) in enumerate(history, start=1)
    ]
    async with client.stream("GET", path, headers={**headers, "Last-Event-ID": "3"}) as response:
        assert [event.id for event in await _read_all(response)] == ["4", "5"]
    async with client.stream("GET", path, params={"after": 4}, headers=headers) as response:
        assert [event.data for event in await _read_all(response)] == [{"status": "completed"}]
    # Resumed after its last event: nothing more will come, so the stream ends empty.
    async with client.stream("GET", path, headers={**headers, "Last-Event-ID": "5"}) as response:
        assert await _read_all(response) == []


async def test_bad_resume_points_and_foreign_runs_are_refused_before_streaming(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    team = await make_team(client)
    other = await make_team(client, slug="globex", owner="gloria")
    run_id = await seed_run(app, team.org_id, await seed_agent(app, team.org_id), status=RunStatus.COMPLETED)
    path = f"/api/runs/{run_id}/events"
    # The documented bound: an event id is at most 2**31 - 1; "+5" and "1_0" are no ids either.
    beyond = ("abc", "-1", "99999999999", str(2**31), "+5", "1_0")
    for extra in ({"Last-Event-ID": value} for value in beyond):
        response = await client.get(path, headers={**team.headers(Role.VIEWER), **extra})
        assert response.status_code == 422, extra
        assert response.headers["content-type"] == "application/problem+json"
    assert (
        await client.get(path, params={"after": -1}, headers=team.headers(Role.VIEWER))
    ).status_code == 422
    # The largest id the document allows is a resume point (past the end: the stream just ends).
    largest = await client.get(path, headers={**team.headers(Role.VIEWER), "Last-Event-ID": str(2**31 - 1)})
    assert largest.status_code == 200
    foreign = await client.get(path, headers=other.headers(Role.OWNER))
    assert foreign.status_code == 404
    assert foreign.headers["content-type"] == "application/problem+json"
    assert (await client.get(path)).status_code == 401


async def test_live_events_arrive_without_reconnecting_and_the_stream_ends_with_the_run(
    app: FastAPI, client: httpx.AsyncClient, live_url: str
) -> None:
    team, run_id = await _running_run(app, client)
    headers = team.headers(Role.MEMBER)
    async with (
        httpx.AsyncClient(base_url=live_url, timeout=10) as http,
        http.stream("GET", f"/api/runs/{run_id}/events", headers=headers) as response,
    ):
        assert response.status_code == 200
        assert response.headers["x-content-type-options"] == "nosniff"
        frames = _frames(response)
        # The history first, through the security, metrics and body-limit middlewares.
        assert [(await anext(frames)).id for _ in range(2)] == ["1", "2"]  # type: ignore[union-attr]
        # Idle: keepalive comments, no events.
        assert await asyncio.wait_for(anext(frames), timeout=5) == "keepalive"
        # Between polls the stream holds no pooled connection (nor does its request's session).
        pool = app.state.engine.pool
        samples = []
        for _ in range(40):
            samples.append(pool.checkedout())
            await asyncio.sleep(0.005)
        assert min(samples) == 0
        updates: list[tuple[EventKind, dict[str, Any]]] = [
            (EventKind.MODEL_REQUEST, {"step": 1}),
            (EventKind.OUTPUT, {"text": "hi"}),
        ]
        for kind, data in updates:
            seq = await append(app, run_id, kind, data)
            frame = await asyncio.wait_for(anext(frames), timeout=5)
            while frame == "keepalive":
                frame = await asyncio.wait_for(anext(frames), timeout=5)
            assert isinstance(frame, Event)
            assert (frame.id, frame.event, frame.data) == (str(seq), kind.value, data)
        await append(app, run_id, EventKind.STATUS, {"status": "completed", "stop_reason": "end_turn"})
        rest = [frame async for frame in frames if isinstance(frame, Event)]
        live = list(rest)
    assert [(frame.id, frame.data["status"]) for frame in live if isinstance(frame, Event)] == [
        ("5", "completed")
    ]


async def _stored_events(app: FastAPI, run_id: str) -> list[tuple[str, str, Any]]:
    async with app.state.sessionmaker() as session:
        rows = await session.scalars(
            select(RunEvent).where(RunEvent.run_id == uuid.UUID(run_id)).order_by(RunEvent.seq)
        )
        return [(str(row.seq), row.kind, row.data) for row in rows]


async def test_a_stream_dropped_while_the_run_appends_resumes_with_nothing_lost_or_repeated(
    app: FastAPI, client: httpx.AsyncClient, live_url: str
) -> None:
    team, run_id = await _running_run(app, client)
    path, headers = f"/api/runs/{run_id}/events", team.headers(Role.VIEWER)
    steps = 60

    async def run_appends() -> None:
        # As the runner's sink does: one committed event after another, the terminal status last.
        for step in range(1, steps + 1):
            await append(app, run_id, EventKind.MODEL_REQUEST, {"step": step})
            await asyncio.sleep(0.01)
        await append(app, run_id, EventKind.STATUS, {"status": "completed", "stop_reason": "end_turn"})

    writer = asyncio.create_task(run_appends())
    received: list[Event] = []
    connections = 0
    async with httpx.AsyncClient(base_url=live_url, timeout=10) as http:
        while True:
            resume = {"Last-Event-ID": str(received[-1].id)} if received else {}
            connections += 1
            ended = True
            async with http.stream("GET", path, headers={**headers, **resume}) as response:
                assert response.status_code == 200
                taken = 0
                async for frame in _frames(response):
                    if not isinstance(frame, Event):
                        continue
                    received.append(frame)
                    taken += 1
                    # Drop the connection mid-run every few events, while the writer goes on.
                    # Not on the terminal event: the stream ends there by itself (this run's row
                    # never becomes terminal, so a stream resumed after it would wait on).
                    if taken == 7 and not writer.done() and frame.event != "status":
                        ended = False
                        break
            if ended:
                break
            await asyncio.sleep(0.03)  # events keep arriving while no stream is open
    await writer

    assert connections > 3  # the drops really happened while the run was appending
    assert [(event.id, event.event, event.data) for event in received] == await _stored_events(app, run_id)
    assert len(received) == 2 + steps + 1
