"""Bad input to the turn routes: a problem with the right status, never a 500, and a refused
turn writes nothing (no run, no audit record, the thread's activity unchanged).

The expectations come from the issue ("unknown thread, another user's thread, a thread of an
archived agent: clear problem+json"), the route's documented answers and the bounds of
docs/runs.md (an input is 1-100,000 characters; no other field).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.agents.helpers import owner
from tests.integration.conftest import audit_rows
from tests.threads.helpers import PROBLEM_JSON, THREADS, an_agent, create_thread, finished, messages, say

PROBLEM = "urn:agentkeep:problem:"
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"
INPUT_MAX = 100_000


def problem(response: httpx.Response, status: int, slug: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    if slug is not None:
        assert response.json()["type"] == PROBLEM + slug, response.text


async def turns_of(http: httpx.AsyncClient, headers: dict[str, str], thread_id: str) -> list[dict[str, Any]]:
    response = await http.get("/api/runs", params={"thread_id": thread_id}, headers=headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def a_thread(http: httpx.AsyncClient) -> tuple[dict[str, str], str, str]:
    """An owner's headers, an agent of theirs and a thread with it."""
    headers = await owner(http)
    agent_id = await an_agent(http, headers)
    return headers, agent_id, (await create_thread(http, headers, agent_id))["id"]


BAD_BODIES: dict[str, Any] = {
    "missing input": {},
    "empty input": {"input": ""},
    "input too long": {"input": "x" * (INPUT_MAX + 1)},
    "input null": {"input": None},
    "input not a string": {"input": 5},
    "unknown field": {"input": "hi", "agent_id": UNKNOWN_ID},
    "bad multitask": {"input": "hi", "multitask": "sometimes"},
    "multitask null": {"input": "hi", "multitask": None},
    "multitask in capitals": {"input": "hi", "multitask": "REJECT"},
    "input with NUL": {"input": "a\x00b"},
    # Raw JSON text: an HTTP client will not encode a lone surrogate itself.
    "input with a lone surrogate": b'{"input": "a\\ud800b"}',
    "not an object": ["hi"],
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
async def test_a_bad_turn_body_is_a_422_problem_and_writes_nothing(
    app: FastAPI, client: httpx.AsyncClient, case: str
) -> None:
    headers, _, thread_id = await a_thread(client)
    before = (await client.get(f"{THREADS}/{thread_id}", headers=headers)).json()
    body = BAD_BODIES[case]
    sent = {"content": body, "headers": {**headers, "Content-Type": "application/json"}}
    if not isinstance(body, bytes):
        sent = {"json": body, "headers": headers}
    response = await client.post(f"{THREADS}/{thread_id}/runs", **sent)
    problem(response, 422)
    assert await turns_of(client, headers, thread_id) == []
    assert (await client.get(f"{THREADS}/{thread_id}", headers=headers)).json() == before
    assert await audit_rows(app, "run_created") == []


@pytest.mark.parametrize(
    "content", [b"not json", b'{"input": "hi"', b"", b"\xff\xfe", b'{"input": "hi"} trailing']
)
async def test_a_body_that_is_not_json_is_a_422_problem(client: httpx.AsyncClient, content: bytes) -> None:
    headers, _, thread_id = await a_thread(client)
    response = await client.post(
        f"{THREADS}/{thread_id}/runs",
        content=content,
        headers={**headers, "Content-Type": "application/json"},
    )
    problem(response, 422)
    assert await turns_of(client, headers, thread_id) == []


async def test_the_longest_input_is_a_turn(client: httpx.AsyncClient) -> None:
    headers, _, thread_id = await a_thread(client)
    run = await say(client, headers, thread_id, "x" * INPUT_MAX, multitask="enqueue")
    assert (await finished(client, headers, run["id"]))["status"] == "completed"


async def test_an_unknown_thread_is_a_404_and_a_malformed_id_a_422(client: httpx.AsyncClient) -> None:
    headers, _, _ = await a_thread(client)
    for path in (f"{THREADS}/{UNKNOWN_ID}/runs", f"{THREADS}/{UNKNOWN_ID}/messages"):
        response = await client.request(
            "POST" if path.endswith("runs") else "GET", path, json={"input": "hi"}, headers=headers
        )
        problem(response, 404, "not-found")
        assert response.json()["title"] == "Thread not found"
    for malformed in ("not-a-uuid", "1", UNKNOWN_ID[:-1]):
        problem(await client.post(f"{THREADS}/{malformed}/runs", json={"input": "hi"}, headers=headers), 422)
        problem(await client.get(f"{THREADS}/{malformed}/messages", headers=headers), 422)


async def test_a_thread_of_an_archived_agent_is_read_only(app: FastAPI, client: httpx.AsyncClient) -> None:
    headers, agent_id, thread_id = await a_thread(client)
    first = await say(client, headers, thread_id, "before the archive")
    assert (await finished(client, headers, first["id"]))["status"] == "completed"
    assert (await client.delete(f"/api/agents/{agent_id}", headers=headers)).status_code == 204
    before = (await client.get(f"{THREADS}/{thread_id}", headers=headers)).json()
    for multitask in ("reject", "enqueue", "interrupt"):
        refused = await client.post(
            f"{THREADS}/{thread_id}/runs", json={"input": "after", "multitask": multitask}, headers=headers
        )
        problem(refused, 409, "agent-archived")
    assert [run["id"] for run in await turns_of(client, headers, thread_id)] == [first["id"]]
    assert (await client.get(f"{THREADS}/{thread_id}", headers=headers)).json() == before
    # The conversation stays readable.
    said = [m["content"] for m in await messages(client, headers, thread_id)]
    assert said == ["before the archive", "echo: before the archive"]
    assert len(await audit_rows(app, "run_created")) == 1


async def test_a_thread_of_a_disabled_agent_takes_no_turn_until_it_is_enabled(
    client: httpx.AsyncClient,
) -> None:
    headers, agent_id, thread_id = await a_thread(client)
    disabled = await client.patch(f"/api/agents/{agent_id}", json={"status": "disabled"}, headers=headers)
    assert disabled.status_code == 200, disabled.text
    before = (await client.get(f"{THREADS}/{thread_id}", headers=headers)).json()
    problem(
        await client.post(f"{THREADS}/{thread_id}/runs", json={"input": "hi"}, headers=headers),
        409,
        "agent-disabled",
    )
    assert await turns_of(client, headers, thread_id) == []
    assert (await client.get(f"{THREADS}/{thread_id}", headers=headers)).json() == before
    enabled = await client.patch(f"/api/agents/{agent_id}", json={"status": "active"}, headers=headers)
    assert enabled.status_code == 200, enabled.text
    run = await say(client, headers, thread_id, "hi")
    assert run["thread_turn"] == 1
    assert (await finished(client, headers, run["id"]))["output"] == "echo: hi"


async def test_an_idempotency_key_replays_the_same_turn_and_refuses_another_body(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    headers, _, thread_id = await a_thread(client)
    path = f"{THREADS}/{thread_id}/runs"
    keyed = {**headers, "Idempotency-Key": "turn-1"}
    first = await client.post(path, json={"input": "once"}, headers=keyed)
    assert first.status_code == 202, first.text
    assert "idempotent-replayed" not in first.headers
    assert (await finished(client, headers, first.json()["id"]))["status"] == "completed"
    again = await client.post(path, json={"input": "once"}, headers=keyed)
    assert again.status_code == 202, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["location"] == f"/api/runs/{first.json()['id']}"
    # The same key with another body, or another multitask policy, is a conflict.
    for body in ({"input": "twice"}, {"input": "once", "multitask": "enqueue"}):
        problem(await client.post(path, json=body, headers=keyed), 409)
    assert [run["id"] for run in await turns_of(client, headers, thread_id)] == [first.json()["id"]]
    assert len(await audit_rows(app, "run_created")) == 1
    # A key is scoped to its thread: the same key starts a turn in another thread.
    other_thread = (
        await create_thread(
            client, headers, (await client.get(f"{THREADS}/{thread_id}", headers=headers)).json()["agent_id"]
        )
    )["id"]
    elsewhere = await client.post(f"{THREADS}/{other_thread}/runs", json={"input": "once"}, headers=keyed)
    assert elsewhere.status_code == 202, elsewhere.text
    assert elsewhere.json()["id"] != first.json()["id"]
    assert "idempotent-replayed" not in elsewhere.headers


def _cursor(position: Any) -> str:
    raw = json.dumps(position, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# The messages cursor is base64url JSON {"s": <message number, 1 to 2**31 - 1>}; anything
# else was not returned by this list.
BAD_CURSORS = {
    "not base64": "garbage!",
    "not JSON": base64.urlsafe_b64encode(b"not json").decode(),
    "a JSON list": _cursor([1]),
    "no position": _cursor({}),
    "zero": _cursor({"s": 0}),
    "negative": _cursor({"s": -1}),
    "a string": _cursor({"s": "1"}),
    "a boolean": _cursor({"s": True}),
    "a fraction": _cursor({"s": 1.5}),
    "beyond 32 bits": _cursor({"s": 2**31}),
    "a thread list's cursor": _cursor({"id": UNKNOWN_ID, "t": "2025-01-01T00:00:00+00:00"}),
    "not ASCII": "\u00e9t\u00e9",
}


async def test_bad_message_cursors_are_a_422_invalid_cursor(client: httpx.AsyncClient) -> None:
    headers, _, thread_id = await a_thread(client)
    path = f"{THREADS}/{thread_id}/messages"
    wrong = []
    for name, cursor in BAD_CURSORS.items():
        response = await client.get(path, params={"cursor": cursor}, headers=headers)
        if response.status_code != 422 or response.json().get("type") != PROBLEM + "invalid-cursor":
            wrong.append(f"{name}: {response.status_code} {response.text[:160]}")
    assert wrong == []
    # Out of the documented bounds of the parameters themselves.
    for params in ({"cursor": "a" * 513}, {"limit": "0"}, {"limit": "201"}, {"limit": "x"}, {"extra": "1"}):
        problem(await client.get(path, params=params, headers=headers), 422)
    # The largest message number is a position (past the end: an empty page).
    last = await client.get(path, params={"cursor": _cursor({"s": 2**31 - 1})}, headers=headers)
    assert last.status_code == 200, last.text
    assert last.json() == {"items": [], "next_cursor": None}
