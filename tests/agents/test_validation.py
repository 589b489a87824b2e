"""Bad agent bodies answer 422 problem+json naming the problem, never a 500, and write nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from agentkeep.agents.models import Agent, AgentVersion
from tests.agents.helpers import AGENTS, agent_body, create_agent, owner

# (body fields, a fragment the problem's errors must contain)
BAD_CREATES: list[tuple[dict[str, Any], str]] = [
    ({"name": ""}, "at least 1 character"),
    ({"name": "   "}, "at least 1 character"),
    ({"name": "x" * 101}, "at most 100 characters"),
    ({"name": "two\nlines"}, "one line"),
    ({"name": "nul\x00byte"}, "NUL"),
    ({"name": 7}, "valid string"),
    ({"description": "d" * 1001}, "at most 1000 characters"),
    ({"description": "nul\x00"}, "NUL"),
    ({"system_prompt": "p" * 20001}, "at most 20000 characters"),
    ({"model": "gpt-4"}, "'test' or 'openai:<model>'"),
    ({"model": "openai:"}, "'test' or 'openai:<model>'"),
    ({"model": "openai:" + "m" * 151}, "at most 157 characters"),
    ({"model": "openai:gpt 4"}, "'test' or 'openai:<model>'"),
    ({"model": "anthropic:claude"}, "'test' or 'openai:<model>'"),
    ({"model": "TEST"}, "'test' or 'openai:<model>'"),
    ({"tools": [{"name": "shell"}]}, "allowed values: calculator, current_time, http_get"),
    ({"tools": [{"name": "calculator"}, {"name": "calculator"}]}, "repeated: calculator"),
    (
        {"tools": [{"name": "http_get", "settings": {"max_redirects": 99}}]},
        "invalid settings for tool 'http_get'",
    ),
    ({"tools": [{"name": "http_get", "settings": {"allowed_hosts": ["a\x00b"]}}]}, "tools"),
    ({"tools": [{"name": "calculator", "extra": 1}]}, "Extra inputs are not permitted"),
    ({"tools": [{"name": "calculator"}] * 17}, "at most 16 items"),
    ({"tools": "calculator"}, "valid list"),
    ({"limits": {"max_steps": 0}}, "greater than or equal to 1"),
    ({"limits": {"max_steps": 51}}, "less than or equal to 50"),
    ({"limits": {"max_output_tokens": 100001}}, "less than or equal to 100000"),
    ({"limits": {"timeout_seconds": 3601}}, "less than or equal to 3600"),
    ({"limits": {"timeout_seconds": 0}}, "greater than or equal to 1"),
    ({"limits": {"max_steps": "10"}}, "valid integer"),
    ({"limits": {"max_steps": 2.5}}, "valid integer"),
    ({"limits": {"max_steps": True}}, "valid integer"),
    ({"limits": {"max_steps": 10**40}}, "less than or equal to 50"),
    ({"limits": {"retries": 3}}, "Extra inputs are not permitted"),
    ({"status": "archived"}, "'active' or 'disabled'"),
    ({"org_id": "00000000-0000-0000-0000-000000000000"}, "Extra inputs are not permitted"),
    ({"version": 9}, "Extra inputs are not permitted"),
    ({"created_by": "00000000-0000-0000-0000-000000000000"}, "Extra inputs are not permitted"),
]


async def _count(app: FastAPI) -> tuple[int, int]:
    async with app.state.sessionmaker() as session:
        agents = await session.scalar(select(func.count()).select_from(Agent))
        versions = await session.scalar(select(func.count()).select_from(AgentVersion))
    return int(agents or 0), int(versions or 0)


async def test_each_bad_field_is_a_422_naming_the_problem(app: FastAPI, client: httpx.AsyncClient) -> None:
    headers = await owner(client)
    for fields, expected in BAD_CREATES:
        response = await client.post(AGENTS, json=agent_body(**fields), headers=headers)
        assert response.status_code == 422, (fields, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert expected in response.text, (fields, response.text)
    missing = await client.post(AGENTS, json={"name": "no model"}, headers=headers)
    assert missing.status_code == 422
    assert ["body", "model"] in [error["loc"] for error in missing.json()["errors"]]
    assert await _count(app) == (0, 0)


async def test_each_bad_field_is_refused_by_patch_too(app: FastAPI, client: httpx.AsyncClient) -> None:
    headers = await owner(client)
    agent = await create_agent(client, headers)
    for fields, expected in BAD_CREATES:
        response = await client.patch(f"{AGENTS}/{agent['id']}", json=fields, headers=headers)
        assert response.status_code == 422, (fields, response.text)
        assert expected in response.text, (fields, response.text)
    assert await _count(app) == (1, 1)


@pytest.mark.parametrize(
    "body",
    [
        {"name": None},
        {"model": None},
        {"description": None},
        {"system_prompt": None},
        {"tools": None},
        {"limits": None},
        {"status": None},
        {"limits": {"max_steps": None}},
    ],
)
async def test_patch_refuses_null_for_a_field_that_always_has_a_value(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    headers = await owner(client)
    agent = await create_agent(client, headers)
    response = await client.patch(f"{AGENTS}/{agent['id']}", json=body, headers=headers)
    assert response.status_code == 422, response.text
    assert "may not be null" in response.text
    assert (await client.get(f"{AGENTS}/{agent['id']}", headers=headers)).json()["version"] == 1


async def test_bodies_that_are_not_objects_are_422(client: httpx.AsyncClient) -> None:
    headers = await owner(client)
    for content in (b"[]", b"null", b'"agent"', b"{", b"\xff\xfe", b'{"name": "\\ud800", "model": "test"}'):
        response = await client.post(
            AGENTS, content=content, headers={**headers, "Content-Type": "application/json"}
        )
        assert response.status_code == 422, (content, response.text)


async def test_bad_ids_and_headers_are_refused_cleanly(client: httpx.AsyncClient) -> None:
    headers = await owner(client)
    assert (await client.get(f"{AGENTS}/not-a-uuid", headers=headers)).status_code == 422
    too_long = await client.post(AGENTS, json=agent_body(), headers={**headers, "Idempotency-Key": "k" * 256})
    assert too_long.status_code == 422
    control = await client.post(AGENTS, json=agent_body(), headers={**headers, "Idempotency-Key": "a\tb"})
    assert control.status_code == 422


JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
FIELD_VALUES = {
    "name": st.text(max_size=120) | JSON_VALUES,
    "description": st.text(max_size=50) | JSON_VALUES,
    "model": st.sampled_from(["test", "openai:gpt-4o", "openai:x/y:z"]) | st.text(max_size=30) | JSON_VALUES,
    "system_prompt": st.text(max_size=50) | JSON_VALUES,
    "tools": st.lists(
        st.fixed_dictionaries(
            {
                "name": st.sampled_from(["calculator", "current_time", "http_get", "shell"])
                | st.text(max_size=8)
            },
            optional={"settings": st.dictionaries(st.text(max_size=20), JSON_VALUES, max_size=3)},
        ),
        max_size=4,
    )
    | JSON_VALUES,
    "limits": st.dictionaries(
        st.sampled_from(["max_steps", "max_output_tokens", "timeout_seconds", "other"]),
        st.integers(-5, 200_000) | JSON_VALUES,
        max_size=3,
    )
    | JSON_VALUES,
    "status": st.sampled_from(["active", "disabled"]) | JSON_VALUES,
    "extra": JSON_VALUES,
}
BODIES = st.fixed_dictionaries({}, optional=FIELD_VALUES) | JSON_VALUES


@pytest.fixture
async def fuzz_account(client: httpx.AsyncClient) -> tuple[dict[str, str], str]:
    """One account and one agent for every example (hypothesis reuses function fixtures)."""
    headers = await owner(client, "fuzzer")
    return headers, str((await create_agent(client, headers, name="fuzz target"))["id"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(create=BODIES, patch=BODIES)
async def test_no_body_makes_a_500(
    client: httpx.AsyncClient, fuzz_account: tuple[dict[str, str], str], create: Any, patch: Any
) -> None:
    """Whatever the JSON, the answer is a success or a problem+json 4xx, never a 500."""
    headers, target = fuzz_account
    created = await client.post(AGENTS, json=create, headers=headers)
    assert created.status_code in {201, 409, 422}, created.text
    changed = await client.patch(f"{AGENTS}/{target}", json=patch, headers=headers)
    assert changed.status_code in {200, 409, 422}, changed.text
    for response in (created, changed):
        if response.status_code >= 400:
            assert response.headers["content-type"] == "application/problem+json"
