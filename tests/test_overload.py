"""MAX_REQUESTS_IN_FLIGHT: beyond it a request is answered at once with 503 problem+json and
`Retry-After: 1`; probes and /metrics always answer; a slot is given back whatever way its
request ends, and neither a slow upload nor an open event stream holds one (README,
docs/OPERATIONS.md "Overload")."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from structlog.testing import capture_logs

from agentkeep.config import Settings
from agentkeep.rbac.permissions import Role
from agentkeep.runs.states import EventKind
from agentkeep.runs.stream import StreamTiming
from tests.orgs.helpers import make_team
from tests.runs.seeding import seed_agent, seed_run
from tests.support.databases import REDIS_URL
from tests.support.held_routes import (
    WAIT_SECONDS,
    Held,
    RawRequest,
    counting_arrivals,
    mount_held_routes,
    served,
    until,
)

BOUND = 4
ORIGIN = "http://localhost:3000"  # the default CORS_ORIGINS


@pytest.fixture
def settings(backend: str, database_url: str, make_settings: Callable[..., Settings]) -> Settings:
    redis_url = REDIS_URL if backend == "postgres" else None
    return make_settings(
        database_url=database_url,
        redis_url=redis_url,
        max_requests_in_flight=BOUND,
        rate_limit_auth="1000/minute",
    )


@pytest.fixture
def held(app: FastAPI) -> Held:
    return mount_held_routes(app)


@pytest.fixture
async def client(app: FastAPI, held: Held) -> AsyncIterator[httpx.AsyncClient]:
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=counting_arrivals(manager.app, held))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


async def hold(http: httpx.AsyncClient, held: Held, count: int) -> list[asyncio.Task[httpx.Response]]:
    """`count` requests admitted and waiting at the gate."""
    entered = held.entered
    tasks = [asyncio.create_task(http.get("/test/held")) for _ in range(count)]
    await until(lambda: held.entered == entered + count, f"{count} held requests admitted")
    return tasks


def assert_overloaded(response: httpx.Response) -> None:
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "1"
    body = response.json()
    assert body["type"] == "urn:agentkeep:problem:overloaded"
    assert body["status"] == 503
    assert body["request_id"] == response.headers["x-request-id"]


async def assert_whole_bound(http: httpx.AsyncClient, held: Held) -> None:
    """Exactly BOUND requests are admitted again, the next one refused: no slot leaked."""
    held.gate.clear()
    tasks = await hold(http, held, BOUND)
    assert_overloaded(await http.get("/test/held"))
    held.gate.set()
    assert [(await task).status_code for task in tasks] == [200] * BOUND


async def test_requests_beyond_the_bound_are_refused_at_once_while_probes_answer(
    app: FastAPI, client: httpx.AsyncClient, held: Held
) -> None:
    tasks = await hold(client, held, BOUND)
    # Answered while every admitted request still waits at the closed gate: at once, without
    # reaching a handler, whatever the route (the body of a login is not even read).
    refused = await asyncio.gather(
        *(client.get("/test/held") for _ in range(3)),
        client.get("/api/agents", headers={"Origin": ORIGIN}),
        client.post("/auth/login", data={"username": "olivia", "password": "x" * 12}),
        client.get("/openapi.json"),
    )
    for response in refused:
        assert_overloaded(response)
    assert held.entered == BOUND
    # An ordinary answer: a browser may read it (CORS), and its Retry-After.
    assert refused[3].headers["access-control-allow-origin"] == ORIGIN
    assert "retry-after" in refused[3].headers["access-control-expose-headers"].lower()
    for probe in ("/health/live", "/health/ready", "/health"):
        assert (await client.get(probe)).status_code == 200, probe
    scrape = await client.get("/metrics")
    assert scrape.status_code == 200
    assert "agentkeep_http_overload_refusals_total 6.0" in scrape.text
    held.gate.set()
    assert [(await task).status_code for task in tasks] == [200] * BOUND
    await assert_whole_bound(client, held)


async def test_preflights_and_oversized_bodies_are_answered_as_without_the_bound(
    client: httpx.AsyncClient, held: Held, settings: Settings
) -> None:
    tasks = await hold(client, held, BOUND)
    # A preflight takes no slot: the browser may still learn whether it could retry.
    preflight = await client.options(
        "/api/agents", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    # A body over MAX_BODY_BYTES is refused for its size (413), not buffered for a slot.
    oversized = await client.post("/test/echo", content=b"x" * (settings.max_body_bytes + 1))
    assert oversized.status_code == 413
    assert oversized.headers["content-type"] == "application/problem+json"
    # An origin CORS does not allow reads nothing of a refusal.
    foreign = await client.get("/test/held", headers={"Origin": "https://elsewhere.example"})
    assert_overloaded(foreign)
    assert "access-control-allow-origin" not in foreign.headers
    assert foreign.headers["x-content-type-options"] == "nosniff"
    held.gate.set()
    assert [(await task).status_code for task in tasks] == [200] * BOUND


async def test_refusals_are_logged_at_most_once_a_second(client: httpx.AsyncClient, held: Held) -> None:
    tasks = await hold(client, held, BOUND)
    with capture_logs() as logs:
        started = time.monotonic()
        for _ in range(30):
            assert_overloaded(await client.get("/test/held"))
        elapsed = time.monotonic() - started
    lines = [entry for entry in logs if entry["event"] == "overloaded"]
    assert 1 <= len(lines) <= 1 + int(elapsed)
    assert (lines[0]["log_level"], lines[0]["limit"], lines[0]["in_flight"]) == ("warning", BOUND, BOUND)
    assert sum(line["refused"] for line in lines) <= 30
    held.gate.set()
    await asyncio.gather(*tasks)


async def test_a_request_that_fails_gives_its_slot_back(client: httpx.AsyncClient, held: Held) -> None:
    # More failures than slots: each one leaking its slot would leave none.
    for _ in range(BOUND + 1):
        failed = await client.get("/test/fails")
        assert failed.status_code == 500
        assert failed.headers["content-type"] == "application/problem+json"
        # Raised after the answer started: the exception leaves through the middleware.
        with pytest.raises(RuntimeError, match="after the answer started"):
            await client.get("/test/fails-midway")
    assert (await client.get("/health/live")).status_code == 200
    await assert_whole_bound(client, held)


async def test_a_client_that_disconnects_gives_its_slot_back(
    app: FastAPI, client: httpx.AsyncClient, held: Held
) -> None:
    in_flight = app.state.requests_in_flight
    async with served(counting_arrivals(app, held)) as (url, port):
        waiting = [await RawRequest.open(port, "GET", "/test/until-disconnect") for _ in range(BOUND)]
        await until(lambda: held.entered == BOUND, "the requests admitted")
        async with httpx.AsyncClient(base_url=url, timeout=WAIT_SECONDS) as http:
            assert_overloaded(await http.get("/test/held"))
            for request in waiting:
                await request.drop()
            await until(lambda: held.left == BOUND and in_flight.count == 0, "every slot given back")
            # A handler that does not notice its client left keeps working, and its slot,
            # until it is done; then the slot is free too.
            gone = await RawRequest.open(port, "GET", "/test/held")
            await until(lambda: held.entered == BOUND + 1, "the held request admitted")
            await gone.drop()
            held.gate.set()
            await until(lambda: in_flight.count == 0, "the held request's slot given back")
            await assert_whole_bound(http, held)


async def test_a_slow_upload_takes_no_slot_until_its_body_arrived(
    app: FastAPI, client: httpx.AsyncClient, held: Held
) -> None:
    async with served(counting_arrivals(app, held)) as (url, port):
        arrived = held.arrived
        uploads = [
            await RawRequest.open(port, "POST", "/test/echo", {"Content-Length": "100"}, body=b"x" * 10)
            for _ in range(BOUND + 1)
        ]
        await until(lambda: held.arrived == arrived + BOUND + 1, "the uploads handed to the app")
        async with httpx.AsyncClient(base_url=url, timeout=WAIT_SECONDS) as http:
            # More bodies still arriving than the bound, and BOUND requests are admitted.
            tasks = await hold(http, held, BOUND)
            assert_overloaded(await http.get("/test/held"))
            # One client gives up halfway through its body: nothing to answer, nothing held.
            await uploads.pop().drop()
            # A body that completes while the bound is full is refused then, not queued.
            for upload in uploads:
                await upload.send(b"x" * 90)
                status, headers = await upload.answer()
                assert (status, headers["retry-after"]) == (503, "1")
                await upload.drop()
            held.gate.set()
            assert [(await task).status_code for task in tasks] == [200] * BOUND
            echoed = await http.post("/test/echo", content=b"y" * 100)
            assert echoed.json() == {"received": 100}
            await assert_whole_bound(http, held)


async def test_an_open_event_stream_holds_no_slot(
    app: FastAPI, client: httpx.AsyncClient, held: Held
) -> None:
    app.state.run_stream_timing = StreamTiming(keepalive_seconds=0.3)
    team = await make_team(client)
    history: list[tuple[EventKind, dict[str, Any]]] = [
        (EventKind.STATUS, {"status": "queued"}),
        (EventKind.STATUS, {"status": "running", "attempt": 1}),
    ]
    run_id = await seed_run(app, team.org_id, await seed_agent(app, team.org_id), events=history)
    path, headers = f"/api/runs/{run_id}/events", team.headers(Role.VIEWER)
    async with (
        served(app) as (url, _),
        httpx.AsyncClient(base_url=url, timeout=WAIT_SECONDS) as http,
    ):
        async with AsyncExitStack() as streams:
            for _ in range(BOUND + 1):
                response = await streams.enter_async_context(http.stream("GET", path, headers=headers))
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                assert (await anext(response.aiter_lines())) == "event: status"  # the first event
            # More streams open than the bound, and every slot is free for other requests.
            tasks = await hold(http, held, BOUND)
            # Opening one is work like any request: refused while the bound is full.
            assert_overloaded(await http.get(path, headers=headers))
            held.gate.set()
            assert [(await task).status_code for task in tasks] == [200] * BOUND
        await assert_whole_bound(http, held)
