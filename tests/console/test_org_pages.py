"""The organization pages through the ASGI app: who may see and do what (the API's
permissions: docs/SECURITY.md's role table), that each action is the API's (same records in
the audit trail, same grant rules), and that hostile names and URLs are shown inert."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi import FastAPI

from agentkeep.config import Settings
from agentkeep.rbac.permissions import Role
from tests.auth.helpers import register
from tests.console.org_support import SECRET_FIELD, app_client, console_user, read_html, team_settings
from tests.orgs.helpers import Team, make_team

# Per user and minute, in the rate-limit test only (sign-in and switching take three).
RATE_LIMIT = 8
HOSTILE = '"><img src=x onerror=alert(1)><script>alert(2)</script>'


@pytest.fixture
def settings(
    request: pytest.FixtureRequest, backend: str, database_url: str, make_settings: Callable[..., Settings]
) -> Settings:
    found = team_settings(backend, database_url, make_settings)
    if "rate_limited" in request.node.name:
        return found.model_copy(update={"rate_limit_api": f"{RATE_LIMIT}/minute"})
    return found


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(app) as http:
        yield http


@pytest.fixture
async def team(client: httpx.AsyncClient) -> Team:
    return await make_team(client, slug="acme", owner="olivia")


async def test_a_viewer_reads_members_without_controls_and_is_refused_every_change(
    client: httpx.AsyncClient, team: Team
) -> None:
    async with console_user(client, team, Role.VIEWER) as viewer:
        page = await viewer.http.get("/org/members")
        assert page.status_code == 200
        assert "mia-acme" in page.text
        assert "Add member" not in page.text
        assert "Change role" not in page.text
        assert "Remove" not in page.text
        for path, data, permission in (
            ("/org/members", {"user": "olivia", "role": "viewer"}, "members:manage"),
            (f"/org/members/{team.user_ids[Role.MEMBER]}/role", {"role": "viewer"}, "members:manage"),
            (f"/org/members/{team.user_ids[Role.MEMBER]}/remove", {}, "members:manage"),
            ("/org/api-keys", {"name": "k", "scopes": "agents:read"}, "apikeys:manage"),
            ("/org/providers", {"name": "p", "base_url": "https://x.example", "api_key": "k"}, "org:manage"),
            (
                "/org/webhooks",
                {"url": "https://hooks.example.com/x", "events": "run.completed"},
                "org:manage",
            ),
            ("/org/budget", {"monthly_token_budget": "5"}, "org:manage"),
        ):
            refused = await viewer.post(path, data)
            assert refused.status_code == 403, (path, refused.text)
            assert "text/html" in refused.headers["content-type"]
            assert f"&#39;{permission}&#39;" in refused.text, path  # the 403 names the permission
        assert (await viewer.http.get("/org/api-keys")).status_code == 403
        assert (await viewer.http.get("/audit")).status_code == 403
    # Nothing changed: the member is still a member.
    members = await client.get(f"/api/orgs/{team.org_id}/members", headers=team.headers(Role.OWNER))
    roles = {item["username"]: item["role"] for item in members.json()["items"]}
    assert roles["mia-acme"] == "member"
    assert "olivia" in roles
    assert roles["olivia"] == "owner"


async def test_an_admin_changes_a_role_and_the_api_and_audit_trail_agree(
    client: httpx.AsyncClient, team: Team
) -> None:
    async with console_user(client, team, Role.ADMIN) as admin:
        page = await admin.http.get("/org/members")
        assert "Change role" in page.text
        # An admin may not grant owner (it lacks org:manage): the option is not offered...
        assert '<option value="owner"' not in page.text
        changed = await admin.post(f"/org/members/{team.user_ids[Role.MEMBER]}/role", {"role": "viewer"})
        assert changed.status_code == 303
        assert changed.headers["location"] == "/org/members?done=role-changed"
        # ... and posting it anyway is the grant rule's refusal, as on the API.
        escalated = await admin.post(f"/org/members/{team.user_ids[Role.MEMBER]}/role", {"role": "owner"})
        assert escalated.status_code == 403
    members = await client.get(f"/api/orgs/{team.org_id}/members", headers=team.headers(Role.OWNER))
    assert {i["username"]: i["role"] for i in members.json()["items"]}["mia-acme"] == "viewer"
    trail = await client.get(
        "/api/audit-logs", params={"action": "role_changed"}, headers=team.headers(Role.OWNER)
    )
    [record] = trail.json()["items"]
    assert record["details"] == {"from": "member", "to": "viewer"}
    assert record["resource_id"] == team.user_ids[Role.MEMBER]
    denied = await client.get(
        "/api/audit-logs", params={"action": "privilege_escalation_denied"}, headers=team.headers(Role.OWNER)
    )
    assert len(denied.json()["items"]) == 1


async def test_an_api_key_secret_is_shown_once_works_and_revoking_ends_it(
    client: httpx.AsyncClient, team: Team
) -> None:
    async with console_user(client, team, Role.ADMIN) as admin:
        created = await admin.post("/org/api-keys", {"name": "ci", "scopes": ["agents:read"]})
        assert created.status_code == 201, created.text
        assert created.headers["cache-control"] == "no-store"
        secret = html.unescape(SECRET_FIELD.search(created.text).group(1))  # type: ignore[union-attr]
        assert secret.startswith("ak_")
        assert (await client.get("/api/agents", headers={"X-API-Key": secret})).status_code == 200
        listing = await admin.http.get("/org/api-keys")
        assert "ci" in listing.text
        assert secret not in listing.text
        keys = await client.get("/api/api-keys", headers=team.headers(Role.ADMIN))
        [key] = keys.json()["items"]
        revoked = await admin.post(f"/org/api-keys/{key['id']}/revoke")
        assert revoked.status_code == 303
        assert (await client.get("/api/agents", headers={"X-API-Key": secret})).status_code == 401
        # A scope the admin does not hold is refused by the grant rule.
        refused = await admin.post("/org/api-keys", {"name": "too-much", "scopes": ["org:manage"]})
        assert refused.status_code == 403
        missing = await admin.post("/org/api-keys", {"name": "none"})
        assert missing.status_code == 422
        assert "scopes" in missing.text


async def test_hostile_names_and_urls_are_escaped(client: httpx.AsyncClient, team: Team) -> None:
    async with console_user(client, team, Role.OWNER) as owner:
        made = await owner.post("/org/api-keys", {"name": HOSTILE, "scopes": ["agents:read"]})
        assert made.status_code == 201, made.text
        hook = "https://hooks.example.com/x?a=%22%3E%3Cscript%3E&b=<script>alert(3)</script>"
        added = await owner.post(
            "/org/webhooks",
            {"url": hook, "events": ["run.completed"], "description": HOSTILE},
        )
        assert added.status_code == 201, added.text
        for path in ("/org/api-keys", "/org/webhooks", "/audit"):
            page = await owner.http.get(path)
            assert page.status_code == 200, path
            parsed = read_html(page.text)
            assert "img" not in parsed.tags, path
            assert not [tag for tag in parsed.tags if tag.endswith("[event handler]")], path
            assert parsed.inline_scripts == 0, path
        # The hostile name and description are shown as text, exactly.
        keys = read_html((await owner.http.get("/org/api-keys")).text)
        assert HOSTILE in keys.text
        hooks = read_html((await owner.http.get("/org/webhooks")).text)
        assert HOSTILE in hooks.text
        assert any(text.startswith("https://hooks.example.com/x?a=") for text in hooks.text)
        trail = read_html((await owner.http.get("/audit", params={"action": "api_key_created"})).text)
        assert HOSTILE in "".join(trail.text)


async def test_secrets_go_in_and_never_come_out_and_a_resubmitted_form_creates_once(
    client: httpx.AsyncClient, team: Team
) -> None:
    async with console_user(client, team, Role.OWNER) as owner:
        added = await owner.post(
            "/org/providers",
            {"name": "default", "base_url": "https://llm.example.com/v1", "api_key": "sk-test-abcdefgh1234"},
        )
        assert added.status_code == 303, added.text
        providers = await owner.http.get("/org/providers")
        assert "https://llm.example.com/v1" in providers.text
        assert "…1234" in providers.text
        assert "sk-test-abcdefgh1234" not in providers.text
        form = await owner.http.get("/org/webhooks")
        key = re.search(r'name="idempotency_key" value="([^"]+)"', form.text)
        assert key is not None
        body = {
            "url": "https://hooks.example.com/in",
            "events": ["run.completed"],
            "idempotency_key": key.group(1),
        }
        first = await owner.post("/org/webhooks", body)
        assert first.status_code == 201, first.text
        assert SECRET_FIELD.search(first.text) is not None
        again = await owner.post("/org/webhooks", body)  # a double click, a reload
        assert again.status_code == 201
        assert SECRET_FIELD.search(again.text) is None
        assert "already submitted" in again.text
        hooks = await client.get(f"/api/orgs/{team.org_id}/webhooks", headers=team.headers(Role.OWNER))
        [hook] = hooks.json()["items"]
        pinged = await owner.post(f"/org/webhooks/{hook['id']}/ping")
        assert pinged.status_code == 303
        log = await owner.http.get(pinged.headers["location"])
        assert log.status_code == 200
        assert "webhook.ping" in log.text
        # The admin holds no org:manage: none of these sections for it.
    async with console_user(client, team, Role.ADMIN) as admin:
        for path in ("/org/providers", "/org/mcp-servers", "/org/webhooks", f"/org/webhooks/{hook['id']}"):
            refused = await admin.http.get(path)
            assert refused.status_code == 403, path
            assert "&#39;org:manage&#39;" in refused.text


async def test_a_rate_limited_page_says_when_to_retry(
    app: FastAPI, team: Team, client: httpx.AsyncClient
) -> None:
    async with console_user(client, team, Role.VIEWER) as viewer:
        answers = [await viewer.http.get("/org/members") for _ in range(RATE_LIMIT + 1)]
        limited = [answer for answer in answers if answer.status_code == 429]
        assert limited, [answer.status_code for answer in answers]
        seconds = int(limited[0].headers["retry-after"])
        assert 0 < seconds <= 60
        assert f"You can try again in {seconds} seconds." in limited[0].text
        fragment = await viewer.http.get("/org/members", headers={"HX-Request": "true"})
        assert fragment.status_code == 429
        assert "<html" not in fragment.text
        assert "try again in" in fragment.text


async def test_members_are_added_and_removed_within_the_grant_rules(
    client: httpx.AsyncClient, team: Team
) -> None:
    assert (await register(client, "newcomer")).status_code == 201
    async with console_user(client, team, Role.ADMIN) as admin:
        added = await admin.post("/org/members", {"user": "newcomer@example.com", "role": "member"})
        assert added.status_code == 303, added.text
        assert "newcomer" in (await admin.http.get("/org/members")).text
        unknown = await admin.post("/org/members", {"user": "nobody-at-all", "role": "member"})
        assert unknown.status_code == 404
        removed = await admin.post(f"/org/members/{team.user_ids[Role.VIEWER]}/remove")
        assert removed.status_code == 303
        # The owner's permissions exceed the admin's: the admin may not act on the owner.
        refused = await admin.post(f"/org/members/{team.user_ids[Role.OWNER]}/remove")
        assert refused.status_code == 403
    members = await client.get(f"/api/orgs/{team.org_id}/members", headers=team.headers(Role.OWNER))
    roles = {item["username"]: item["role"] for item in members.json()["items"]}
    assert roles["newcomer"] == "member"
    assert "vic-acme" not in roles
    assert roles["olivia"] == "owner"


async def test_the_owner_sets_the_budget_the_usage_page_shows(client: httpx.AsyncClient, team: Team) -> None:
    async with console_user(client, team, Role.OWNER) as owner:
        assert "unlimited" in (await owner.http.get("/org/usage")).text
        saved = await owner.post("/org/budget", {"monthly_token_budget": "1,000,000"})
        assert saved.status_code == 303
        page = await owner.http.get("/org/usage")
        assert "1,000,000 tokens (0 % used" in page.text
        assert 'class="budget-line"' in page.text
        assert (await owner.post("/org/budget", {"monthly_token_budget": "-5"})).status_code == 422
        assert (await owner.http.get("/org/usage", params={"month": "2026-13"})).status_code == 422
    budget = await client.get("/api/usage", headers=team.headers(Role.OWNER))
    assert budget.json()["budget"] == 1_000_000
