"""The README walkthrough, end to end against a real `agentkeep serve` process with the
embedded defaults (SQLite, in-process runner, offline `test` model): register, log in,
create an agent with the calculator tool, start a run, stream its events, read the result."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support.server import running_server

PASSWORD = "a long passphrase 42"

pytestmark = pytest.mark.timeout(120)


def _sse(lines: list[str]) -> list[dict[str, object]]:
    events: list[dict[str, object]] = []
    current: dict[str, object] = {}
    for line in lines:
        if not line:
            if current:
                events.append(current)
            current = {}
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            current[field] = value.removeprefix(" ")
    if current:
        events.append(current)
    return events


def test_readme_walkthrough_with_a_real_server() -> None:
    with running_server() as server, httpx.Client(base_url=server.base_url, timeout=30) as http:
        registered = http.post(
            "/auth/register", json={"username": "alice", "email": "alice@example.com", "password": PASSWORD}
        )
        assert registered.status_code == 201, registered.text
        login = http.post("/auth/login", data={"username": "alice", "password": PASSWORD})
        assert login.status_code == 200, login.text
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
        agent_id = agent.json()["id"]

        run = http.post(f"/api/agents/{agent_id}/runs", headers=auth, json={"input": "What is (2+3)*4?"})
        assert run.status_code == 202, run.text
        run_id = run.json()["id"]
        assert run.headers["location"] == f"/api/runs/{run_id}"

        with http.stream("GET", f"/api/runs/{run_id}/events", headers=auth) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            events = _sse(list(stream.iter_lines()))
        kinds = [event["event"] for event in events]
        ids = [int(str(event["id"])) for event in events]
        assert ids == list(range(1, len(ids) + 1))
        assert "tool_call" in kinds
        assert "tool_result" in kinds
        statuses = [json.loads(str(e["data"]))["status"] for e in events if e["event"] == "status"]
        assert statuses[0] == "queued"
        assert statuses[-1] == "completed"
        tool_result = next(json.loads(str(e["data"])) for e in events if e["event"] == "tool_result")
        assert tool_result["tool"] == "calculator"

        # Resuming after the third event replays exactly the rest.
        with http.stream(
            "GET", f"/api/runs/{run_id}/events", headers={**auth, "Last-Event-ID": "3"}
        ) as stream:
            rest = _sse(list(stream.iter_lines()))
        assert [int(str(event["id"])) for event in rest] == ids[3:]

        result = http.get(f"/api/runs/{run_id}", headers=auth).json()
        assert result["status"] == "completed"
        assert result["stop_reason"] == "end_turn"
        assert "20" in result["output"]
        assert result["usage"]["requests"] >= 2
        assert result["usage"]["input_tokens"] > 0
