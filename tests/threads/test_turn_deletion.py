"""Deleting a thread erases the conversation (issue 14: "deletion erases content").

What stays, as the design states it: the runs of the thread, with status, stop reason,
usage and timings (accounting and budgets need them), but input "", no output, no error,
and no event but the status changes; the audit record `thread_deleted` keeps the counts.
What goes: every message, and every word of the conversation anywhere in the database,
searched in a dump of every table. A turn still running is ended `cancelled` and nothing
its runner produces afterwards is stored.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from agentkeep.config import Settings
from agentkeep.rbac.permissions import Role
from agentkeep.runs.models import Run, RunEvent
from agentkeep.threads.models import ThreadMessage
from tests.agents.helpers import create_agent
from tests.integration.conftest import audit_rows
from tests.orgs.helpers import make_team
from tests.support.chat_server import ChatServer, Slow, running_chat_server, text_reply
from tests.support.secret_scan import postgres_text, sqlite_text
from tests.support.timing import SCHEDULING_MARGIN_SECONDS
from tests.threads.helpers import (
    PROBLEM_JSON,
    THREADS,
    create_thread,
    finished,
    messages,
    say,
    thread_settings,
)
from tests.threads.test_turn_privacy import another_member

# Words of the conversation no other row could hold by chance: what the user says, the tool
# call's arguments and its result (1729 * 8191 = 14162239), and the model's answers.
SAID = "Remember papaya-ledger-4471 and compute 1729 * 8191"
SAID_NEXT = "quokka-ballad-9907 is my answer"
CONVERSATION = ["papaya-ledger-4471", "1729 * 8191", "14162239", "quokka-ballad-9907"]
# The slow model's conversation: the question, and an answer sent after the deletion.
ASKED = "slow-question-heron-3307"
LATE_ANSWER = "late-answer-walrus-5521"
MODEL_DELAY_SECONDS = 10.0


@pytest.fixture
def chat() -> Iterator[ChatServer]:
    """An OpenAI-compatible model server on loopback; each test scripts its answers."""
    with running_chat_server() as server:
        yield server


@pytest.fixture
def settings(
    backend: str, database_url: str, make_settings: Callable[..., Settings], chat: ChatServer
) -> Settings:
    # `openai:` models talk to `chat`.
    return thread_settings(
        make_settings,
        backend,
        database_url,
        openai_base_url=chat.base_url,
        openai_api_key=f"local-{secrets.token_hex(16)}",
    )


def database_text(url: str) -> str:
    """Every row of every table, as text."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        assert parsed.database is not None
        return sqlite_text(Path(parsed.database)) or ""
    libpq = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq, autocommit=True, connect_timeout=10) as connection:
        return postgres_text(connection)


def found(words: list[str], text: str) -> list[str]:
    return [word for word in words if word in text]


async def stored_events(app: FastAPI, run_id: str) -> list[tuple[int, str, dict[str, Any]]]:
    async with app.state.sessionmaker() as session:
        statement = select(RunEvent).where(RunEvent.run_id == uuid.UUID(run_id)).order_by(RunEvent.seq)
        return [(event.seq, event.kind, event.data) for event in await session.scalars(statement)]


async def stored_messages(app: FastAPI, run_ids: list[str]) -> int:
    async with app.state.sessionmaker() as session:
        statement = select(func.count()).where(ThreadMessage.run_id.in_([uuid.UUID(i) for i in run_ids]))
        return int(await session.scalar(statement) or 0)


async def stored_run(app: FastAPI, run_id: str) -> Run:
    async with app.state.sessionmaker() as session:
        run: Run | None = await session.get(Run, uuid.UUID(run_id))
        assert run is not None
        return run


async def test_deleting_a_thread_erases_its_conversation_and_keeps_the_accounting(
    app: FastAPI, client: httpx.AsyncClient, database_url: str
) -> None:
    team = await make_team(client)
    member, owner = team.headers(Role.MEMBER), team.headers(Role.OWNER)
    agent = await create_agent(client, owner, tools=[{"name": "calculator"}])
    thread = await create_thread(client, member, agent["id"])
    runs = []
    for text in (SAID, SAID_NEXT):
        done = await finished(client, member, (await say(client, member, thread["id"], text))["id"])
        assert done["status"] == "completed", done
        runs.append(done)
    assert runs[0]["output"] == "calculator: 14162239"
    conversation = await messages(client, member, thread["id"])
    assert [m["role"] for m in conversation] == [
        "user",
        "assistant",
        "tool",
        "assistant",
        "user",
        "assistant",
    ]
    events_before = {run["id"]: await stored_events(app, run["id"]) for run in runs}
    assert any(kind == "tool_call" for _, kind, _ in events_before[runs[0]["id"]])
    # The search below sees the conversation where it is stored.
    assert found(CONVERSATION, database_text(database_url)) == CONVERSATION

    deleted = await client.delete(f"{THREADS}/{thread['id']}", headers=member)
    assert deleted.status_code == 204, deleted.text

    for gone in (
        await client.get(f"{THREADS}/{thread['id']}", headers=member),
        await client.get(f"{THREADS}/{thread['id']}/messages", headers=owner),
        await client.post(f"{THREADS}/{thread['id']}/runs", json={"input": "again"}, headers=member),
    ):
        assert gone.status_code == 404
        assert gone.headers["content-type"].startswith(PROBLEM_JSON)
    assert await stored_messages(app, [run["id"] for run in runs]) == 0
    for before in runs:
        # The owner still reads each run for accounting: its outcome, usage and timings.
        answer = await client.get(f"/api/runs/{before['id']}", headers=owner)
        assert answer.status_code == 200, answer.text
        after = answer.json()
        kept = ("status", "stop_reason", "usage", "created_at", "started_at", "finished_at", "agent_id")
        assert {field: after[field] for field in kept} == {field: before[field] for field in kept}
        assert after["usage"]["input_tokens"] > 0
        assert after["usage"]["output_tokens"] > 0
        assert (after["input"], after["output"], after["error"]) == ("", None, None)
        assert after["thread_id"] is None
        stored = await stored_run(app, before["id"])
        assert (stored.input, stored.output, stored.error, stored.thread_id) == ("", None, None, None)
        # Only the status changes are left, as they were.
        statuses = [event for event in events_before[before["id"]] if event[1] == "status"]
        assert await stored_events(app, before["id"]) == statuses
        assert [data["status"] for _, _, data in statuses] == ["queued", "running", "completed"]

    # Deleting never widens who sees a run: the creator and threads:read_all still do (an
    # auditor included), other members and viewers did not before and do not now.
    for role, sees in {Role.MEMBER: True, Role.AUDITOR: True, Role.ADMIN: True, Role.VIEWER: False}.items():
        headers = team.headers(role)
        listed = (await client.get("/api/runs", headers=headers)).json()["items"]
        assert ({item["id"] for item in listed} >= {run["id"] for run in runs}) is sees, role
        for run in runs:
            for path in (f"/api/runs/{run['id']}", f"/api/runs/{run['id']}/events"):
                assert (await client.get(path, headers=headers)).status_code == (200 if sees else 404)
    other_member = await another_member(client, team)
    assert (await client.get(f"/api/runs/{runs[0]['id']}", headers=other_member)).status_code == 404
    assert (await client.get("/api/runs", headers=other_member)).json()["items"] == []

    [record] = await audit_rows(app, "thread_deleted")
    assert record.resource_id == thread["id"]
    assert record.user_id == uuid.UUID(team.user_ids[Role.MEMBER])
    assert {key: record.details[key] for key in ("turns", "turns_cancelled", "messages_erased")} == {
        "turns": 2,
        "turns_cancelled": 0,
        "messages_erased": len(conversation),
    }
    # No audit record (run_created, run_completed, ...) ever held the conversation.
    trail = [(row.action, row.resource_id, row.details, row.user_agent) for row in await audit_rows(app)]
    assert found(CONVERSATION, repr(trail)) == []
    assert found(CONVERSATION, database_text(database_url)) == []


async def runner_idle(app: FastAPI, seconds: float) -> None:
    """Wait until the in-process runner drives no run; fail after `seconds`."""
    deadline = time.monotonic() + seconds
    while app.state.run_queue.running:
        assert time.monotonic() < deadline, f"the runner is still busy after {seconds} s"
        await asyncio.sleep(0.05)


async def test_deleting_a_thread_ends_its_running_turn_and_stores_nothing_its_runner_says_later(
    app: FastAPI, client: httpx.AsyncClient, chat: ChatServer, database_url: str
) -> None:
    chat.script.append(Slow(MODEL_DELAY_SECONDS, text_reply(LATE_ANSWER)))
    team = await make_team(client)
    member, owner = team.headers(Role.MEMBER), team.headers(Role.OWNER)
    agent = await create_agent(client, owner, model="openai:local-model")
    thread = await create_thread(client, member, agent["id"])
    turn = await say(client, member, thread["id"], ASKED)
    deadline = time.monotonic() + 30
    while not chat.requests:  # the runner has sent the question and waits for the answer
        assert time.monotonic() < deadline, "the model was never asked"
        await asyncio.sleep(0.05)
    assert (await client.get(f"/api/runs/{turn['id']}", headers=member)).json()["status"] == "running"

    deleted = await client.delete(f"{THREADS}/{thread['id']}", headers=member)
    assert deleted.status_code == 204, deleted.text
    run = (await client.get(f"/api/runs/{turn['id']}", headers=owner)).json()
    assert (run["status"], run["stop_reason"], run["input"], run["output"]) == (
        "cancelled",
        "cancelled",
        "",
        None,
    )
    assert run["finished_at"] is not None

    # Whatever the runner does now (the answer comes after MODEL_DELAY_SECONDS), it stores nothing.
    await runner_idle(app, MODEL_DELAY_SECONDS + 10 * SCHEDULING_MARGIN_SECONDS)
    events = await stored_events(app, turn["id"])
    assert {kind for _, kind, _ in events} == {"status"}
    assert [data["status"] for _, _, data in events] == ["queued", "running", "cancelled"]
    assert await stored_messages(app, [turn["id"]]) == 0
    stored = await stored_run(app, turn["id"])
    assert (stored.status, stored.input, stored.output, stored.error) == ("cancelled", "", None, None)
    assert stored.lease_owner is None
    assert len(chat.requests) == 1  # the runner did not ask again
    [record] = await audit_rows(app, "thread_deleted")
    assert {key: record.details[key] for key in ("turns", "turns_cancelled", "messages_erased")} == {
        "turns": 1,
        "turns_cancelled": 1,
        "messages_erased": 0,
    }
    assert found([ASKED, LATE_ANSWER], database_text(database_url)) == []
