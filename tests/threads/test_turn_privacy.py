"""Who may act on the turns of a thread. The expectations are written by hand from
docs/threads.md "Who sees which thread" and the role table of docs/SECURITY.md:

- the runs of a thread (its turns) are as private as the thread: whoever does not see the
  thread gets 404 for the turn's run, its events and its cancellation, and never finds the
  run in `GET /api/runs`, filtered by the thread or not;
- the creator sees their thread, through a login session; an API key sees only the threads
  it started itself (not its creator's, not another key's);
- owner, admin and auditor hold `threads:read_all` and see every thread, as does a key
  with that scope; a member sees only their own; a viewer started none;
- the permission gate comes first: starting a turn needs `runs:create` (auditors and
  viewers: 403 even on a thread they see), cancelling `runs:cancel`, reading `runs:read`;
- another organization's thread is a plain 404.

Cancelling a turn that has finished answers 409 `run-finished` to whoever may reach it: the
409 (rather than 404) proves the run was found.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from agentkeep.rbac.permissions import Role
from tests.agents.helpers import owner
from tests.auth.helpers import bearer, register
from tests.orgs.helpers import Team, create_key, key_header, login_in, make_team
from tests.threads.helpers import PROBLEM_JSON, THREADS, an_agent, create_thread, finished, messages, say

KEY_SCOPES = ["runs:read", "runs:create", "runs:cancel"]
PROBLEM = "urn:agentkeep:problem:"


@dataclass(frozen=True)
class May:
    """What a caller gets on a thread: starting a turn, reading it, cancelling a turn."""

    start: int  # 202, or the refusal
    read: bool  # messages, the run, its events, the run in both lists
    cancel: int  # 409 run-finished (reached), 404 or 403


YES = May(start=202, read=True, cancel=409)
UNSEEN = May(start=404, read=False, cancel=404)
READ_ONLY = May(start=403, read=True, cancel=403)  # sees every thread, changes none
NOTHING = May(start=403, read=False, cancel=403)  # neither may start nor sees the thread


async def role_change(http: httpx.AsyncClient, team: Team, role: Role, to: Role) -> None:
    changed = await http.patch(
        f"/api/orgs/{team.org_id}/members/{team.user_ids[role]}",
        json={"role": to.value},
        headers=team.headers(Role.OWNER),
    )
    assert changed.status_code == 200, changed.text
    # A role change ends the user's sessions: log in again.
    team.tokens[role] = (await login_in(http, team.users[role], team.slug))["access_token"]


async def member_keys(http: httpx.AsyncClient, team: Team, count: int) -> list[dict[str, str]]:
    """API keys of the team's member. Only admins make keys (apikeys:manage): the member is an
    admin for a moment, then a member again; their keys act within the member role since."""
    await role_change(http, team, Role.MEMBER, Role.ADMIN)
    keys = [key_header(await create_key(http, team.headers(Role.MEMBER), KEY_SCOPES)) for _ in range(count)]
    await role_change(http, team, Role.MEMBER, Role.MEMBER)
    return keys


async def another_member(http: httpx.AsyncClient, team: Team, username: str = "max-acme") -> dict[str, str]:
    created = await register(http, username)
    assert created.status_code == 201, created.text
    added = await http.post(
        f"/api/orgs/{team.org_id}/members",
        json={"user": username, "role": "member"},
        headers=team.headers(Role.OWNER),
    )
    assert added.status_code == 201, added.text
    return bearer((await login_in(http, username, team.slug))["access_token"])


async def listed_run_ids(http: httpx.AsyncClient, headers: dict[str, str], **params: str) -> set[str]:
    response = await http.get("/api/runs", params={"limit": 200, **params}, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["next_cursor"] is None
    return {item["id"] for item in response.json()["items"]}


def _refusal(response: httpx.Response, status: int, slug: str | None = None) -> str | None:
    """None when `response` is the expected problem, else what is wrong with it."""
    if response.status_code != status:
        return f"{response.status_code} {response.text[:120]}"
    if not response.headers["content-type"].startswith(PROBLEM_JSON):
        return "not a problem+json"
    if slug is not None and response.json()["type"] != PROBLEM + slug:
        return f"type {response.json()['type']}"
    return None


async def check(
    http: httpx.AsyncClient,
    name: str,
    headers: dict[str, str],
    may: May,
    thread_id: str,
    creator: dict[str, str],
) -> list[str]:
    """Every turn route as `headers`, against `may`; the mismatches, named."""
    wrong: list[str] = []

    def expect(what: str, problem: str | None) -> None:
        if problem is not None:
            wrong.append(f"{name} {what}: {problem}")

    # The creator's view is the truth the others' reads are compared with.
    turns = await listed_run_ids(http, creator, thread_id=thread_id)
    conversation = await messages(http, creator, thread_id)
    first = conversation[0]["run_id"]

    started = await http.post(
        f"{THREADS}/{thread_id}/runs", json={"input": f"hello from {name}"}, headers=headers
    )
    if may.start == 202:
        if started.status_code != 202:
            expect("start a turn", f"{started.status_code} {started.text[:120]}")
        else:
            turn = await finished(http, creator, started.json()["id"])
            expect("its turn", None if turn["status"] == "completed" else str(turn))
            turns.add(turn["id"])
            conversation = await messages(http, creator, thread_id)
    else:
        expect("start a turn", _refusal(started, may.start))
        # A refused start wrote nothing.
        after = await listed_run_ids(http, creator, thread_id=thread_id)
        expect("turns after a refused start", None if after == turns else "changed")

    listed = await http.get(f"{THREADS}/{thread_id}/messages", headers=headers)
    run = await http.get(f"/api/runs/{first}", headers=headers)
    events = await http.get(f"/api/runs/{first}/events", headers=headers)
    if may.read:
        same = listed.status_code == 200 and listed.json() == {"items": conversation, "next_cursor": None}
        expect("messages", None if same else f"{listed.status_code}, not the creator's conversation")
        expect(
            "the run", None if run.status_code == 200 and run.json()["thread_id"] == thread_id else run.text
        )
        expect(
            "events", None if events.status_code == 200 and "event: status" in events.text else events.text
        )
    else:
        expect("messages", _refusal(listed, 404, "not-found"))
        expect("the run", _refusal(run, 404, "not-found"))
        expect("events", _refusal(events, 404, "not-found"))
    everything = await listed_run_ids(http, headers)
    of_thread = await listed_run_ids(http, headers, thread_id=thread_id)
    listed_all = turns <= everything if may.read else everything.isdisjoint(turns)
    expect("GET /api/runs", None if listed_all else f"lists {sorted(everything & turns)}")
    expect("GET /api/runs?thread_id", None if of_thread == (turns if may.read else set()) else f"{of_thread}")

    cancel = await http.post(f"/api/runs/{first}/cancel", headers=headers)
    slug = {409: "run-finished", 404: "not-found", 403: "permission-denied"}[may.cancel]
    expect("cancel", _refusal(cancel, may.cancel, slug))
    return wrong


async def test_each_caller_reaches_a_members_turns_exactly_as_the_rules_say(
    client: httpx.AsyncClient,
) -> None:
    team = await make_team(client)
    agent_id = await an_agent(client, team.headers(Role.OWNER))
    [creators_key] = await member_keys(client, team, 1)
    read_all_key = key_header(
        await create_key(client, team.headers(Role.OWNER), [*KEY_SCOPES, "threads:read_all"])
    )
    other_member = await another_member(client, team)
    outsider = await owner(client, "oscar")
    creator = team.headers(Role.MEMBER)
    thread_id = (await create_thread(client, creator, agent_id))["id"]
    for text in ("My name is Ada.", "I like tea."):
        assert (await finished(client, creator, (await say(client, creator, thread_id, text))["id"]))[
            "status"
        ] == "completed"

    table: dict[str, tuple[dict[str, str], May]] = {
        "creator": (creator, YES),
        "another member": (other_member, UNSEEN),
        "admin": (team.headers(Role.ADMIN), YES),
        "owner": (team.headers(Role.OWNER), YES),
        "auditor": (team.headers(Role.AUDITOR), READ_ONLY),
        "viewer": (team.headers(Role.VIEWER), NOTHING),
        "creator's key": (creators_key, UNSEEN),
        "key with threads:read_all": (read_all_key, YES),
        "another organization": (outsider, UNSEEN),
    }
    wrong: list[str] = []
    for name, (headers, may) in table.items():
        wrong += await check(client, name, headers, may, thread_id, creator)
    assert wrong == []
    # Every allowed start made a turn, in the caller order of the table; the conversation says so.
    said = [m["content"] for m in await messages(client, creator, thread_id) if m["role"] == "user"]
    assert said == [
        "My name is Ada.",
        "I like tea.",
        "hello from creator",
        "hello from admin",
        "hello from owner",
        "hello from key with threads:read_all",
    ]


async def test_a_key_sees_the_turns_it_started_and_its_creator_does_too(client: httpx.AsyncClient) -> None:
    team = await make_team(client)
    agent_id = await an_agent(client, team.headers(Role.OWNER))
    key, other_key = await member_keys(client, team, 2)
    creator = team.headers(Role.MEMBER)
    thread_id = (await create_thread(client, key, agent_id))["id"]
    run = await say(client, key, thread_id, "started by a key")
    assert (await finished(client, key, run["id"]))["status"] == "completed"

    table: dict[str, tuple[dict[str, str], May]] = {
        "the key": (key, YES),
        # A user sees the threads started through any of their keys.
        "its creator": (creator, YES),
        "its creator's other key": (other_key, UNSEEN),
        "another member": (await another_member(client, team), UNSEEN),
        "viewer": (team.headers(Role.VIEWER), NOTHING),
    }
    wrong: list[str] = []
    for name, (headers, may) in table.items():
        wrong += await check(client, name, headers, may, thread_id, key)
    assert wrong == []


async def test_a_turn_is_refused_before_the_thread_is_looked_up_for_callers_without_runs_create(
    client: httpx.AsyncClient,
) -> None:
    """403 for a caller lacking the permission whether or not the thread exists or is theirs:
    the refusal discloses nothing about the thread."""
    team = await make_team(client)
    agent_id = await an_agent(client, team.headers(Role.OWNER))
    thread_id = (await create_thread(client, team.headers(Role.MEMBER), agent_id))["id"]
    read_only_key = key_header(
        await create_key(client, team.headers(Role.OWNER), ["runs:read", "threads:read_all"])
    )
    unknown = "00000000-0000-4000-8000-000000000000"
    for headers in (team.headers(Role.VIEWER), team.headers(Role.AUDITOR), read_only_key):
        for target in (thread_id, unknown):
            response = await client.post(f"{THREADS}/{target}/runs", json={"input": "hi"}, headers=headers)
            assert _refusal(response, 403, "permission-denied") is None, response.text
    assert await listed_run_ids(client, team.headers(Role.OWNER), thread_id=thread_id) == set()
