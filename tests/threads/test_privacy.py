"""Who sees which thread. The expectations are the issue's privacy rules, restated by hand:
a thread is visible to its creator; owner, admin and auditor (threads:read_all) see every
thread of the organization; an API key sees the threads it started, or all with the scope;
anyone else, another organization included, gets 404 as if the thread did not exist."""

from __future__ import annotations

import httpx

from agentkeep.rbac.permissions import Role
from tests.agents.helpers import owner
from tests.orgs.helpers import create_key, key_header, make_team
from tests.threads.helpers import PROBLEM_JSON, THREADS, an_agent, create_thread, listed_ids

WORK_SCOPES = ["runs:read", "runs:create"]


async def test_each_caller_sees_exactly_the_threads_the_rules_allow(client: httpx.AsyncClient) -> None:
    team = await make_team(client)
    agent_id = await an_agent(client, team.headers(Role.OWNER))
    # Only admins and owners make keys (apikeys:manage); without the scope a key is narrower
    # than its creator.
    admin_key = key_header(await create_key(client, team.headers(Role.ADMIN), WORK_SCOPES))
    other_admin_key = key_header(await create_key(client, team.headers(Role.ADMIN), WORK_SCOPES))
    all_key = key_header(
        await create_key(client, team.headers(Role.OWNER), [*WORK_SCOPES, "threads:read_all"])
    )
    outsider = await owner(client, "oscar")

    mine = (await create_thread(client, team.headers(Role.MEMBER), agent_id))["id"]
    admins = (await create_thread(client, team.headers(Role.ADMIN), agent_id))["id"]
    keys = (await create_thread(client, admin_key, agent_id))["id"]
    every = {mine, admins, keys}

    sees = {
        "owner": (team.headers(Role.OWNER), every),
        "admin": (team.headers(Role.ADMIN), every),
        "auditor": (team.headers(Role.AUDITOR), every),
        "member": (team.headers(Role.MEMBER), {mine}),
        "viewer": (team.headers(Role.VIEWER), set()),
        "admin's key": (admin_key, {keys}),
        "admin's other key": (other_admin_key, set()),
        "key with threads:read_all": (all_key, every),
        "outsider": (outsider, set()),
    }
    wrong: list[str] = []
    for name, (headers, visible) in sees.items():
        listed = await listed_ids(client, headers)
        if set(listed) != visible or len(listed) != len(visible):
            wrong.append(f"{name} lists {sorted(listed)}")
        for thread_id in every:
            response = await client.get(f"{THREADS}/{thread_id}", headers=headers)
            expected = 200 if thread_id in visible else 404
            if response.status_code != expected:
                wrong.append(f"{name} GET {thread_id}: {response.status_code}, wanted {expected}")
            if expected == 404 and not response.headers["content-type"].startswith(PROBLEM_JSON):
                wrong.append(f"{name} GET {thread_id}: not a problem")
    assert wrong == []


async def test_another_members_thread_cannot_be_changed_or_deleted(client: httpx.AsyncClient) -> None:
    team = await make_team(client)
    agent_id = await an_agent(client, team.headers(Role.OWNER))
    thread = await create_thread(client, team.headers(Role.ADMIN), agent_id, title="admin's")
    path = f"{THREADS}/{thread['id']}"
    member = team.headers(Role.MEMBER)
    assert (await client.patch(path, json={"title": "hijacked"}, headers=member)).status_code == 404
    assert (await client.delete(path, headers=member)).status_code == 404
    # Auditors see every thread but change none (they lack runs:create).
    auditor = team.headers(Role.AUDITOR)
    assert (await client.patch(path, json={"title": "x"}, headers=auditor)).status_code == 403
    assert (await client.delete(path, headers=auditor)).status_code == 403
    assert (await client.get(path, headers=team.headers(Role.ADMIN))).json()["title"] == "admin's"


async def test_an_owner_may_delete_a_members_thread(client: httpx.AsyncClient) -> None:
    team = await make_team(client)
    agent_id = await an_agent(client, team.headers(Role.OWNER))
    thread = await create_thread(client, team.headers(Role.MEMBER), agent_id)
    path = f"{THREADS}/{thread['id']}"
    assert (await client.delete(path, headers=team.headers(Role.OWNER))).status_code == 204
    assert (await client.get(path, headers=team.headers(Role.MEMBER))).status_code == 404


async def test_a_thread_started_by_a_key_names_the_key_and_its_creator(client: httpx.AsyncClient) -> None:
    team = await make_team(client)
    agent_id = await an_agent(client, team.headers(Role.OWNER))
    key = await create_key(client, team.headers(Role.ADMIN), WORK_SCOPES)
    thread = await create_thread(client, key_header(key), agent_id)
    assert thread["created_by_api_key_id"] == key["id"]
    assert thread["created_by_user_id"] == team.user_ids[Role.ADMIN]


async def test_viewers_and_narrow_keys_cannot_start_threads(client: httpx.AsyncClient) -> None:
    team = await make_team(client)
    agent_id = await an_agent(client, team.headers(Role.OWNER))
    read_only = key_header(await create_key(client, team.headers(Role.OWNER), ["runs:read"]))
    for headers in (team.headers(Role.VIEWER), team.headers(Role.AUDITOR), read_only):
        response = await client.post(THREADS, json={"agent_id": agent_id}, headers=headers)
        assert response.status_code == 403
        assert response.headers["content-type"].startswith(PROBLEM_JSON)
    assert await listed_ids(client, team.headers(Role.OWNER)) == []


async def test_a_demoted_admin_keeps_their_own_and_their_keys_threads_only(client: httpx.AsyncClient) -> None:
    team = await make_team(client)
    owner_headers = team.headers(Role.OWNER)
    agent_id = await an_agent(client, owner_headers)
    admin_key = key_header(await create_key(client, team.headers(Role.ADMIN), WORK_SCOPES))
    by_key = (await create_thread(client, admin_key, agent_id))["id"]
    by_session = (await create_thread(client, team.headers(Role.ADMIN), agent_id))["id"]
    by_owner = (await create_thread(client, owner_headers, agent_id))["id"]
    demoted = await client.patch(
        f"/api/orgs/{team.org_id}/members/{team.user_ids[Role.ADMIN]}",
        json={"role": "member"},
        headers=owner_headers,
    )
    assert demoted.status_code == 200, demoted.text
    # The user sees what they started, through a session or a key of theirs; not the owner's.
    assert set(await listed_ids(client, team.headers(Role.ADMIN))) == {by_key, by_session}
    assert await listed_ids(client, admin_key) == [by_key]
    assert (await client.get(f"{THREADS}/{by_owner}", headers=team.headers(Role.ADMIN))).status_code == 404
