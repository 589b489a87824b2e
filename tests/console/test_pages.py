"""The console's agents, chat and runs pages through the ASGI app, on SQLite and PostgreSQL:
what each role sees and may do, escaping of hostile content, errors as pages."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from agentkeep.app import create_app
from agentkeep.config import Settings
from agentkeep.rbac.permissions import Role
from tests.auth.helpers import register
from tests.console.pages import csrf_header, sign_in, switch_org
from tests.orgs.helpers import Team, make_team

HOSTILE = '"><img src=x onerror=alert(1)><script>alert(2)</script>'
AGENT_ID = re.compile(r"/agents/([0-9a-f-]{36})")
RUN_ID = re.compile(r"/runs/([0-9a-f-]{36})/stream")


class Browserless:
    """One person's cookie jar on the app."""

    def __init__(self, app: FastAPI) -> None:
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
        self.token = ""

    async def sign_in(self, username: str, org_id: str) -> None:
        self.token = await switch_org(self.http, await sign_in(self.http, username), org_id)

    async def post(
        self, path: str, data: dict[str, str | list[str]] | None = None, **kwargs: object
    ) -> httpx.Response:
        return await self.http.post(path, data={**(data or {}), "csrf_token": self.token}, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
async def team(client: httpx.AsyncClient) -> Team:
    return await make_team(client)


@pytest.fixture
async def people(
    app: FastAPI, client: httpx.AsyncClient, team: Team
) -> AsyncIterator[dict[Role, Browserless]]:
    people = {role: Browserless(app) for role in (Role.OWNER, Role.VIEWER)}
    for role, person in people.items():
        await person.sign_in(team.users[role], team.org_id)
    yield people
    for person in people.values():
        await person.http.aclose()


def agent_form(name: str, **fields: str) -> dict[str, str | list[str]]:
    return {
        "approvers": ["owner", "admin", "member"],
        "name": name,
        "description": "",
        "model": "test",
        "system_prompt": "",
        "tools": "",
        "status": "active",
        "approval_timeout_seconds": "3600",
        **fields,
    }


async def create_agent(owner: Browserless, name: str, **fields: str) -> str:
    created = await owner.post("/agents", agent_form(name, **fields))
    assert created.status_code == 303, created.text
    found = AGENT_ID.search(created.headers["location"])
    assert found is not None
    return found.group(1)


async def test_a_hostile_agent_name_is_shown_as_text(people: dict[Role, Browserless]) -> None:
    owner = people[Role.OWNER]
    agent_id = await create_agent(
        owner, HOSTILE, system_prompt="<b>bold</b> & </textarea><script>x()</script>"
    )
    for path in (f"/agents/{agent_id}", "/agents", f"/agents/{agent_id}/edit", f"/chat/{agent_id}"):
        page = await owner.http.get(path)
        assert page.status_code == 200, path
        assert "<script>alert(2)" not in page.text, path
        assert "<img src=x" not in page.text, path
        assert "&lt;script&gt;alert(2)&lt;/script&gt;" in page.text, path
    edit = (await owner.http.get(f"/agents/{agent_id}/edit")).text
    assert "</textarea><script>" not in edit
    assert "&lt;/textarea&gt;&lt;script&gt;x()" in edit


async def test_editing_makes_a_version_and_the_diff_shows_the_change(people: dict[Role, Browserless]) -> None:
    owner = people[Role.OWNER]
    agent_id = await create_agent(owner, "helper", description="first")
    edited = await owner.post(
        f"/agents/{agent_id}", {**agent_form("helper", description="second"), "version": "1"}
    )
    assert edited.status_code == 303, edited.text
    page = (await owner.http.get(f"/agents/{agent_id}?a=1&b=2")).text
    assert '<span class="removed">-  &#34;description&#34;: &#34;first&#34;,</span>' in page
    assert '<span class="added">+  &#34;description&#34;: &#34;second&#34;,</span>' in page
    # A form filled from version 1 no longer applies: 412, shown as a page.
    stale = await owner.post(
        f"/agents/{agent_id}", {**agent_form("helper", description="third"), "version": "1"}
    )
    assert stale.status_code == 412
    assert "text/html" in stale.headers["content-type"]
    archived = await owner.post(f"/agents/{agent_id}/archive", {"version": "2"})
    assert archived.status_code == 303
    assert (await owner.http.get(f"/agents/{agent_id}")).status_code == 404


async def test_invalid_agent_input_is_listed_not_a_500(people: dict[Role, Browserless]) -> None:
    owner = people[Role.OWNER]
    answer = await owner.post("/agents", agent_form("bad", tools='[{"name": "nope"}]', max_steps="many"))
    assert answer.status_code == 422
    assert "unknown tool" in answer.text
    assert "max_steps" in answer.text
    assert "Traceback" not in answer.text


async def test_a_viewer_sees_no_create_buttons_and_is_refused_when_posting(
    people: dict[Role, Browserless],
) -> None:
    owner, viewer = people[Role.OWNER], people[Role.VIEWER]
    agent_id = await create_agent(owner, "shown")
    listing = await viewer.http.get("/agents")
    assert listing.status_code == 200
    assert "shown" in listing.text
    assert "New agent" not in listing.text
    detail = (await viewer.http.get(f"/agents/{agent_id}")).text
    for control in (f'href="/chat/{agent_id}"', f'href="/agents/{agent_id}/edit"', "/archive"):
        assert control not in detail
    refused = await viewer.post("/agents", agent_form("sneaky"))
    assert refused.status_code == 403
    assert "agents:write" in refused.text
    assert (await viewer.http.get("/agents/new")).status_code == 403
    assert "sneaky" not in (await owner.http.get("/agents")).text


async def _run_page_until(owner: Browserless, run_id: str, pattern: str) -> str:
    deadline = time.monotonic() + 60
    while True:
        page = (await owner.http.get(f"/runs/{run_id}")).text
        if re.search(pattern, page):
            return page
        assert time.monotonic() < deadline, page
        await asyncio.sleep(0.1)


async def start_thread(owner: Browserless, agent_id: str) -> str:
    created = await owner.post(f"/chat/{agent_id}/threads", {"title": "first talk"})
    assert created.status_code == 303, created.text
    return str(created.headers["location"])


async def test_a_turn_streams_its_events_as_escaped_html(people: dict[Role, Browserless]) -> None:
    owner = people[Role.OWNER]
    agent_id = await create_agent(owner, "echoer")
    thread = await start_thread(owner, agent_id)
    page = await owner.http.get(thread)
    said = await owner.http.post(
        f"{thread}/turns",
        data={"message": "hello <b>there</b>"},
        headers={"HX-Request": "true", "X-CSRF-Token": csrf_header(page.text)},
    )
    assert said.status_code == 200, said.text
    assert "hello &lt;b&gt;there&lt;/b&gt;" in said.text
    found = RUN_ID.search(said.text)
    assert found is not None
    stream = await owner.http.get(f"/runs/{found.group(1)}/stream")
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert "event: item" in stream.text
    assert stream.text.rstrip().endswith("event: end\ndata:")
    assert "echo: hello &lt;b&gt;there&lt;/b&gt;" in stream.text
    assert "<b>there</b>" not in stream.text
    run_page = await _run_page_until(owner, found.group(1), "completed")
    assert "Answer" in run_page
    transcript = (await owner.http.get(thread)).text
    assert "echo: hello &lt;b&gt;there&lt;/b&gt;" in transcript


async def test_a_tool_call_waits_for_approval_and_resumes_when_approved(
    people: dict[Role, Browserless],
) -> None:
    owner, viewer = people[Role.OWNER], people[Role.VIEWER]
    agent_id = await create_agent(owner, "careful", tools='[{"name": "calculator", "approval": "always"}]')
    thread = await start_thread(owner, agent_id)
    said = await owner.post(f"{thread}/turns", {"message": "what is 2+3"}, headers={"HX-Request": "true"})
    assert said.status_code == 200, said.text
    found = RUN_ID.search(said.text)
    assert found is not None
    run_id = found.group(1)
    page = await _run_page_until(owner, run_id, ">Approve<")
    call_id = re.search(r'&#34;tool_call_id&#34;: &#34;([^&]+)&#34;|"tool_call_id": "([^"]+)"', page)
    assert call_id is not None
    tool_call_id = call_id.group(1) or call_id.group(2)
    refused = await viewer.post(
        f"/runs/{run_id}/approvals", {"tool_call_id": tool_call_id, "decision": "approve"}
    )
    # docs/approvals.md: the agent's approvers decide; anyone else gets 403 naming the permission.
    assert refused.status_code == 403
    assert "runs:approve" in refused.text
    approved = await owner.post(
        f"/runs/{run_id}/approvals", {"tool_call_id": tool_call_id, "decision": "approve"}
    )
    assert approved.status_code == 200, approved.text
    assert "Approved" in approved.text
    done = await _run_page_until(owner, run_id, "completed")
    assert "calculator: 5" in done


async def test_a_spent_rate_limit_says_when_to_retry(
    make_settings: Callable[..., Settings], sqlite_url: str
) -> None:
    app = create_app(make_settings(database_url=sqlite_url, rate_limit_runs="1/minute"))
    async with LifespanManager(app) as manager:
        owner = Browserless(manager.app)  # type: ignore[arg-type]
        assert (await register(owner.http, "rita")).status_code == 201
        owner.token = await sign_in(owner.http, "rita")
        agent_id = await create_agent(owner, "limited")
        thread = await start_thread(owner, agent_id)
        first = await owner.post(f"{thread}/turns", {"message": "one"}, headers={"HX-Request": "true"})
        assert first.status_code == 200
        second = await owner.post(f"{thread}/turns", {"message": "two"}, headers={"HX-Request": "true"})
        assert second.status_code == 429
        retry = int(second.headers["retry-after"])
        assert 1 <= retry <= 60
        assert f"try again in {retry} seconds" in second.text
        await owner.http.aclose()
