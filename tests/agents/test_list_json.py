"""The agents list writes its rows without building models (src/agentkeep/responses.py):
its JSON must be what the response model itself writes, byte for byte, on every backend."""

from __future__ import annotations

import json

import httpx

from agentkeep.agents.schemas import AgentPage, AgentRead
from tests.agents.helpers import AGENTS, create_agent, owner


async def test_the_list_is_the_json_its_response_model_writes(client: httpx.AsyncClient) -> None:
    headers = await owner(client)
    await create_agent(client, headers, name="plain")
    await create_agent(
        client,
        headers,
        name="nested",
        description='Ünïcode "quoted" </script>',
        tools=[{"name": "calculator"}, {"name": "current_time"}],
    )
    first = await client.get(AGENTS, params={"limit": 1}, headers=headers)
    assert first.status_code == 200
    assert first.headers["content-type"] == "application/json"
    page = AgentPage.model_validate_json(first.content)
    assert page.next_cursor is not None
    # Validated and written again by the model: the same bytes (datetimes, ids, escaping).
    assert first.content == page.model_dump_json().encode()
    rest = await client.get(AGENTS, params={"limit": 1, "cursor": page.next_cursor}, headers=headers)
    assert rest.content == AgentPage.model_validate_json(rest.content).model_dump_json().encode()
    assert json.loads(rest.content)["next_cursor"] is None
    # Each item is what the single-agent route (which answers a model) answers.
    for body in (first, rest):
        (item,) = body.json()["items"]
        single = await client.get(f"{AGENTS}/{item['id']}", headers=headers)
        assert AgentRead.model_validate_json(single.content).model_dump_json().encode() in body.content
        assert single.json() == item
