"""A thread turn whose `agentkeep worker` is killed mid-turn is recovered, and written once.

PostgreSQL only: turns run on real `agentkeep worker` processes, which need the PostgreSQL
job queue. The API is the test app (it only dispatches, RUN_EXECUTION=queue); the model is a
local OpenAI-compatible server that holds the turn's request until the test lets it answer,
so the first worker is inside its model call when it gets SIGKILL. Its lease expires, the
second worker's recovery sweep puts the turn back in the queue, and the turn runs again with
the same history. A turn's messages are written once, by the attempt that records its
outcome, so the conversation has each message exactly once.
"""

from __future__ import annotations

import secrets
import signal
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from agentkeep.config import Settings
from tests.agents.helpers import create_agent, owner
from tests.support.databases import (
    create_postgres_database,
    drop_postgres_database,
    postgres_answers,
    unavailable,
)
from tests.support.held_chat import HeldChatServer, answer_to, conversation, running_held_chat_server
from tests.support.processes import clean_environment, process_log, run_agentkeep
from tests.support.timing import SCHEDULING_MARGIN_SECONDS
from tests.threads.helpers import create_thread, messages, say, settled
from tests.worker.helpers import assert_gap_free, events, statuses
from tests.worker.test_worker_process import worker_process

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

MODEL = "openai:local-model"
LEASE_SECONDS = 2
# A worker process starts in seconds, slower on a loaded host; a recovered turn then waits
# for its lease to expire and the sweep (every LEASE_SECONDS / 2) before it runs again.
WORKER_START_SECONDS = 90.0
RECOVERY_SECONDS = WORKER_START_SECONDS + LEASE_SECONDS * 2 + SCHEDULING_MARGIN_SECONDS


@pytest.fixture
async def turn_database() -> AsyncIterator[str]:
    if not await postgres_answers():
        unavailable("PostgreSQL (`agentkeep worker` needs it)")
    url = await create_postgres_database("agentkeep_turns")
    yield url
    await drop_postgres_database(url)


@pytest.fixture
def model_server() -> Iterator[HeldChatServer]:
    with running_held_chat_server() as server:
        yield server


@pytest.fixture
def worker_env(turn_database: str, model_server: HeldChatServer, tmp_path: Path) -> dict[str, str]:
    env = clean_environment(
        {
            "JWT_SECRET": secrets.token_urlsafe(48),
            "DATABASE_URL": turn_database,
            "RUN_LEASE_SECONDS": str(LEASE_SECONDS),
            "RUN_CONCURRENCY": "2",
            "OPENAI_BASE_URL": model_server.base_url,
            "LOG_LEVEL": "INFO",
            "LOG_FORMAT": "json",
        }
    )
    migrated = run_agentkeep("migrate", env=env, cwd=tmp_path, timeout=120)
    assert migrated.returncode == 0, migrated.stderr  # the schema and the job queue's
    return env


@pytest.fixture
def settings(
    worker_env: dict[str, str], make_settings: Callable[..., Settings], model_server: HeldChatServer
) -> Settings:
    # The API only dispatches turns to the job queue; the worker processes execute them.
    return make_settings(
        database_url=worker_env["DATABASE_URL"],
        run_execution="queue",
        rate_limit_auth="1000/minute",
        openai_base_url=model_server.base_url,
    )


@pytest.fixture
async def client(client: httpx.AsyncClient, model_server: HeldChatServer) -> AsyncIterator[httpx.AsyncClient]:
    """The app's client; whatever the test's end, the model answers before the app stops."""
    yield client
    model_server.gate.set()


async def test_a_turn_whose_worker_was_killed_is_recovered_and_its_messages_written_once(
    app: FastAPI, client: httpx.AsyncClient, model_server: HeldChatServer, worker_env: dict[str, str]
) -> None:
    headers = await owner(client)
    agent = await create_agent(client, headers, model=MODEL)
    thread_id = str((await create_thread(client, headers, agent["id"]))["id"])

    with worker_process(worker_env, process_log("agentkeep-worker-killed")) as killed:
        before = await say(client, headers, thread_id, "My name is Ada.")
        assert (await settled(client, headers, before["id"], RECOVERY_SECONDS))["status"] == "completed"
        model_server.gate.clear()
        turn = await say(client, headers, thread_id, "What is my name?")
        await model_server.wait_for_requests(2, within=RECOVERY_SECONDS)  # the turn asks the model
        running = (await client.get(f"/api/runs/{turn['id']}", headers=headers)).json()
        assert (running["status"], running["attempts"]) == ("running", 1)
        # The next turn waits behind it.
        after = await say(client, headers, thread_id, "What did I say first?", multitask="enqueue")
        killed.send_signal(signal.SIGKILL)
        assert killed.wait(timeout=10) == -signal.SIGKILL

    # The killed attempt recorded nothing: the turn still claims to run, no message of it.
    assert (await client.get(f"/api/runs/{turn['id']}", headers=headers)).json()["status"] == "running"
    assert (await client.get(f"/api/runs/{after['id']}", headers=headers)).json()["status"] == "queued"
    assert [m["run_id"] for m in await messages(client, headers, thread_id)] == [before["id"]] * 2

    model_server.gate.set()
    with worker_process(worker_env, process_log("agentkeep-worker-successor")) as successor:
        done = await settled(client, headers, turn["id"], RECOVERY_SECONDS)
        assert (done["status"], done["attempts"]) == ("completed", 2)
        assert done["output"] == answer_to("What is my name?")
        assert (await settled(client, headers, after["id"], RECOVERY_SECONDS))["status"] == "completed"
        successor.send_signal(signal.SIGTERM)
        assert successor.wait(timeout=30) == 0

    said = ["My name is Ada.", "What is my name?", "What did I say first?"]
    spoken = [pair for text in said for pair in [("user", text), ("assistant", answer_to(text))]]
    listed = await messages(client, headers, thread_id)
    assert [(m["role"], m["content"]) for m in listed] == spoken
    assert [m["run_id"] for m in listed] == [run["id"] for run in (before, turn, after) for _ in range(2)]
    assert [m["seq"] for m in listed] == list(range(1, 7))

    # What the model was sent: the killed attempt and its retry each carried the first turn
    # and the question once; the next turn, queued meanwhile, ran after the recovered one and
    # carried the whole conversation without duplicates.
    first_turn, killed_attempt, retry, next_turn = (seen.body for seen in model_server.requests)
    assert conversation(first_turn) == spoken[:1]
    assert conversation(killed_attempt) == conversation(retry) == spoken[:3]
    assert conversation(next_turn) == spoken[:5]

    recorded = app.state.sessionmaker
    assert await statuses(recorded, uuid.UUID(turn["id"])) == [
        "queued",
        "running",
        "queued",
        "running",
        "completed",
    ]
    assert_gap_free(await events(recorded, uuid.UUID(turn["id"])))
