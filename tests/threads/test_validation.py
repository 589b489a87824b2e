"""Bad thread input: a 422 problem naming the rule, never a 500, and nothing written."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.agents.helpers import owner
from tests.threads.helpers import PROBLEM_JSON, THREADS, an_agent, create_thread

# Bounds from docs/threads.md: title 200 characters, metadata 64 keys of 1-64 characters and
# 8192 bytes of JSON.
BAD_CREATES: dict[str, dict[str, Any]] = {
    "unknown field": {"owner_id": "x"},
    "title too long": {"title": "t" * 201},
    "title with a newline": {"title": "two\nlines"},
    "title with NUL": {"title": "a\x00b"},
    "metadata not an object": {"metadata": ["a"]},
    "metadata too large": {"metadata": {"k": "x" * 8200}},
    "metadata too many keys": {"metadata": {f"k{i}": i for i in range(65)}},
    "metadata key too long": {"metadata": {"k" * 65: 1}},
    "metadata empty key": {"metadata": {"": 1}},
    "metadata with NUL": {"metadata": {"k": "\x00"}},
    "version zero": {"agent_version": 0},
    "version as a string": {"agent_version": "1"},
    "agent id not a uuid": {"agent_id": "not-a-uuid"},
}


@pytest.mark.parametrize("case", sorted(BAD_CREATES))
async def test_a_bad_create_is_a_422_problem_and_writes_nothing(client: httpx.AsyncClient, case: str) -> None:
    headers = await owner(client)
    agent_id = await an_agent(client, headers)
    response = await client.post(THREADS, json={"agent_id": agent_id, **BAD_CREATES[case]}, headers=headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    assert (await client.get(THREADS, headers=headers)).json()["items"] == []


async def test_metadata_just_within_the_bounds_is_kept(client: httpx.AsyncClient) -> None:
    headers = await owner(client)
    agent_id = await an_agent(client, headers)
    # {"k":"xxx..."} is 8 bytes of punctuation and key around the value.
    metadata = {"k": "x" * (8192 - 8)}
    thread = await create_thread(client, headers, agent_id, metadata=metadata, title="t" * 200)
    assert thread["metadata"] == metadata
    too_big = await client.post(
        THREADS, json={"agent_id": agent_id, "metadata": {"k": "x" * (8192 - 7)}}, headers=headers
    )
    assert too_big.status_code == 422


@pytest.mark.parametrize(
    "patch",
    [
        {"title": None},
        {"metadata": None},
        {"agent_id": "x"},
        {"title": "t" * 201},
        {"metadata": {"k": "x" * 8200}},
    ],
)
async def test_a_bad_patch_is_a_422_problem_and_changes_nothing(
    client: httpx.AsyncClient, patch: dict[str, Any]
) -> None:
    headers = await owner(client)
    thread = await create_thread(client, headers, await an_agent(client, headers), title="kept")
    path = f"{THREADS}/{thread['id']}"
    response = await client.patch(path, json=patch, headers=headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    assert (await client.get(path, headers=headers)).json() == thread


@pytest.mark.parametrize(
    "params", [{"limit": "0"}, {"limit": "201"}, {"cursor": "garbage!"}, {"agent_id": "x"}, {"extra": "1"}]
)
async def test_bad_list_parameters_are_a_422_problem(
    client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    headers = await owner(client)
    response = await client.get(THREADS, params=params, headers=headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)


async def test_a_malformed_thread_id_is_a_422_and_an_unknown_one_a_404(client: httpx.AsyncClient) -> None:
    headers = await owner(client)
    assert (await client.get(f"{THREADS}/not-a-uuid", headers=headers)).status_code == 422
    unknown = await client.get(f"{THREADS}/00000000-0000-4000-8000-000000000000", headers=headers)
    assert unknown.status_code == 404
    assert unknown.json()["title"] == "Thread not found"
