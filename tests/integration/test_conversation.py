"""The README's conversation (three turns of a thread, then its messages), end to end against a
real `agentkeep serve` process: with the embedded defaults (SQLite, in-process runner) as
`make run` serves it, and on PostgreSQL with a real `agentkeep worker` executing the turns.

What is sent and what must come back are read from the README section itself, so the
documented answers cannot drift from what the product says.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.databases import (
    create_postgres_database,
    drop_postgres_database,
    postgres_answers,
    unavailable,
)
from tests.support.processes import AGENTKEEP, clean_environment, process_log
from tests.support.server import running_server

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "### A conversation: turns of a thread"
PASSWORD = "a long passphrase 42"
OUTPUT = "#   "

pytestmark = pytest.mark.timeout(180)


def readme_conversation() -> tuple[list[tuple[str, str]], list[str]]:
    """([(what `say` sends, the line it prints)], [the lines the messages listing prints])."""
    text = README.read_text()
    section = text[text.index(SECTION) :]
    section = section[: section.index("\n## ")]
    turns = re.findall(rf"^say '([^']+)'\n{re.escape(OUTPUT)}(.+)$", section, flags=re.MULTILINE)
    listing = section[section.index("/messages") :]
    block = listing[: listing.index("```")]
    lines = [line.removeprefix(OUTPUT) for line in block.splitlines() if line.startswith(OUTPUT)]
    return turns, lines


def test_the_readme_section_holds_a_conversation_whose_third_answer_recalls_the_first() -> None:
    turns, lines = readme_conversation()
    assert len(turns) == 3
    first_input, _ = turns[0]
    third_input, third_answer = turns[2]
    assert "#recall" in third_input
    assert first_input in third_answer
    assert len(lines) >= 6  # two messages per turn at least


def _stream_to_end(http: httpx.Client, headers: dict[str, str], run_id: str) -> str:
    """Read the run's event stream until the server closes it; the last status it carried."""
    statuses: list[str] = []
    with http.stream("GET", f"/api/runs/{run_id}/events", headers=headers) as stream:
        assert stream.status_code == 200
        for line in stream.iter_lines():
            if line.startswith("data:") and '"status"' in line:
                statuses.append(json.loads(line.removeprefix("data:"))["status"])
    return statuses[-1]


def _listed(message: dict[str, Any]) -> str:
    """A message as the README's listing prints it."""
    shown = message["content"] or message["tool_calls"] or message["tool_results"]
    return f"{message['seq']} {message['role']} {json.dumps(shown)}"


def converse(base_url: str) -> None:
    turns, lines = readme_conversation()
    with httpx.Client(base_url=base_url, timeout=60) as http:
        registered = http.post(
            "/auth/register", json={"username": "alice", "email": "alice@example.com", "password": PASSWORD}
        )
        assert registered.status_code == 201, registered.text
        login = http.post("/auth/login", data={"username": "alice", "password": PASSWORD})
        auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
        agent = http.post(
            "/api/agents",
            headers=auth,
            json={
                "name": "math",
                "model": "test",
                "system_prompt": "You do arithmetic.",
                "tools": [{"name": "calculator"}],
            },
        )
        assert agent.status_code == 201, agent.text
        thread = http.post(
            "/api/threads", headers=auth, json={"agent_id": agent.json()["id"], "title": "First conversation"}
        )
        assert thread.status_code == 201, thread.text
        thread_id = thread.json()["id"]

        for said, printed in turns:
            turn = http.post(f"/api/threads/{thread_id}/runs", headers=auth, json={"input": said})
            assert turn.status_code == 202, turn.text
            run_id = turn.json()["id"]
            assert _stream_to_end(http, auth, run_id) == "completed"
            run = http.get(f"/api/runs/{run_id}", headers=auth).json()
            assert run["thread_id"] == thread_id
            assert f"{run['thread_turn']} {run['status']} {run['output']}" == printed

        listing = http.get(f"/api/threads/{thread_id}/messages", headers=auth)
        assert listing.status_code == 200, listing.text
        assert listing.json()["next_cursor"] is None
        assert [_listed(message) for message in listing.json()["items"]] == lines


def test_the_readme_conversation_with_the_embedded_defaults() -> None:
    with running_server() as server:
        converse(server.base_url)


@contextlib.contextmanager
def worker(env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    with process_log("agentkeep-worker").open("wb") as log:
        process = subprocess.Popen(
            [*AGENTKEEP, "worker"], env=clean_environment(env), stdout=log, stderr=subprocess.STDOUT
        )
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@pytest.fixture
def postgres_database() -> Iterator[str]:
    if not asyncio.run(postgres_answers()):
        unavailable("PostgreSQL")
    url = asyncio.run(create_postgres_database("agentkeep_conversation"))
    yield url
    asyncio.run(drop_postgres_database(url))


def test_the_readme_conversation_on_postgresql_with_a_worker(postgres_database: str, tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": postgres_database,
        "JWT_SECRET": secrets.token_urlsafe(48),
        "RUN_EXECUTION": "queue",  # serve only queues; the worker executes every turn
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
    }
    with running_server(env, workdir=tmp_path) as server, worker(env) as process:
        converse(server.base_url)
        assert process.poll() is None, "the worker exited"
