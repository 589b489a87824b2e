"""The thread list: newest activity first, cursor pages that neither skip nor repeat, filters."""

from __future__ import annotations

from datetime import timedelta

import httpx
from fastapi import FastAPI

from agentkeep.rbac.permissions import Role
from tests.orgs.helpers import make_team
from tests.threads.helpers import THREADS, an_agent, listed_ids
from tests.threads.seeding import seed_thread


async def test_threads_come_newest_activity_first_across_pages(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    team = await make_team(client)
    headers = team.headers(Role.OWNER)
    agent_id = await an_agent(client, headers)
    owner_id = team.user_ids[Role.OWNER]
    # Seeded out of order; expected order written from the ages: 1 min, 2 min, ... 7 min ago.
    ages = [5, 1, 7, 3, 2, 6, 4]
    seeded = {
        age: await seed_thread(app, team.org_id, agent_id, owner_id, active_ago=timedelta(minutes=age))
        for age in ages
    }
    expected = [seeded[age] for age in range(1, 8)]
    assert await listed_ids(client, headers, limit="2") == expected
    first = (await client.get(THREADS, params={"limit": 3}, headers=headers)).json()
    assert [item["id"] for item in first["items"]] == expected[:3]
    assert first["next_cursor"] is not None


async def test_filters_narrow_by_agent_and_creator(app: FastAPI, client: httpx.AsyncClient) -> None:
    team = await make_team(client)
    headers = team.headers(Role.OWNER)
    first_agent = await an_agent(client, headers, name="first")
    second_agent = await an_agent(client, headers, name="second")
    owner_id, member_id = team.user_ids[Role.OWNER], team.user_ids[Role.MEMBER]
    by_owner = await seed_thread(app, team.org_id, first_agent, owner_id)
    by_member = await seed_thread(app, team.org_id, first_agent, member_id)
    on_second = await seed_thread(app, team.org_id, second_agent, member_id)
    assert set(await listed_ids(client, headers, agent_id=first_agent)) == {by_owner, by_member}
    assert set(await listed_ids(client, headers, created_by=member_id)) == {by_member, on_second}
    both = await listed_ids(client, headers, agent_id=second_agent, created_by=member_id)
    assert both == [on_second]
    # A filter never widens: the member asking for the owner's threads gets none.
    assert await listed_ids(client, team.headers(Role.MEMBER), created_by=owner_id) == []
