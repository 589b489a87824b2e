"""The audit page through the ASGI app: who may read it (`audit:read`: owner, admin,
auditor, docs/SECURITY.md), that it shows the organization's records only (docs/audit.md,
"Query API"), its filters, the chain's status, and the export's format (docs/audit.md,
"Export": the AuditLogRead columns, formula cells quoted)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from agentkeep.audit.models import AuditLog
from agentkeep.audit.schemas import AuditLogRead
from agentkeep.audit.sealing import seal_with
from agentkeep.config import Settings
from agentkeep.rbac.permissions import Role
from tests.auth.helpers import bearer
from tests.console.org_support import app_client, console_user, read_html, team_settings
from tests.orgs.helpers import Team, login_in, make_team


@pytest.fixture
def settings(backend: str, database_url: str, make_settings: Callable[..., Settings]) -> Settings:
    return team_settings(backend, database_url, make_settings)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(app) as http:
        yield http


@pytest.fixture
async def team(client: httpx.AsyncClient) -> Team:
    return await make_team(client, slug="acme", owner="olivia")


async def _other_org_event(client: httpx.AsyncClient) -> None:
    """An audited action in another team: must never show in acme's log."""
    other = await make_team(client, slug="globex", owner="gordon")
    created = await client.post(
        "/api/api-keys",
        json={"name": "globex-secret-project", "scopes": ["agents:read"]},
        headers=other.headers(Role.OWNER),
    )
    assert created.status_code == 201, created.text


async def test_only_audit_readers_see_the_log(client: httpx.AsyncClient, team: Team) -> None:
    for role in (Role.MEMBER, Role.VIEWER):
        async with console_user(client, team, role) as user:
            refused = await user.http.get("/audit")
            assert refused.status_code == 403
            assert "&#39;audit:read&#39;" in refused.text
            assert (await user.http.get("/audit/export", params={"format": "csv"})).status_code == 403
            assert "/audit" not in read_html((await user.http.get("/")).text).text  # no nav entry
    for role in (Role.OWNER, Role.ADMIN, Role.AUDITOR):
        async with console_user(client, team, role) as user:
            assert (await user.http.get("/audit")).status_code == 200, role


async def test_the_log_lists_this_organizations_records_with_filters(
    client: httpx.AsyncClient, team: Team
) -> None:
    await _other_org_event(client)
    async with console_user(client, team, Role.ADMIN) as admin:
        made = await admin.post("/org/api-keys", {"name": "deploy-bot", "scopes": ["agents:read"]})
        assert made.status_code == 201
    async with console_user(client, team, Role.AUDITOR) as auditor:
        page = await auditor.http.get("/audit")
        assert page.status_code == 200
        assert "member_added" in page.text
        assert "api_key_created" in page.text
        assert "globex-secret-project" not in page.text  # another organization's record
        only_keys = await auditor.http.get(
            "/audit", params={"action": "api_key_created", "actor": "adam-acme"}
        )
        text = read_html(only_keys.text).text
        assert "deploy-bot" in "".join(text)
        assert "member_added" not in only_keys.text.split("<table", 1)[1]
        nobody = await auditor.http.get("/audit", params={"action": "api_key_created", "actor": "olivia"})
        assert "No audit entries match." in nobody.text
        future = await auditor.http.get("/audit", params={"since": "2999-01-01T00:00"})
        assert "No audit entries match." in future.text
        bad = await auditor.http.get("/audit", params={"since": "yesterday"})
        assert bad.status_code == 422
        assert "since" in bad.text
        unknown = await auditor.http.get("/audit", params={"actor": "no such person"})
        assert unknown.status_code == 422


async def test_the_chain_status_is_shown(client: httpx.AsyncClient, team: Team) -> None:
    async with console_user(client, team, Role.AUDITOR) as auditor:
        fragment = await auditor.http.get("/audit/verify", headers={"HX-Request": "true"})
        assert fragment.status_code == 200
        assert 'data-chain="ok"' in fragment.text
        assert "<html" not in fragment.text
        page = await auditor.http.get("/audit/verify")
        assert "<html" in page.text
        assert "Intact" in page.text


async def test_the_export_has_the_cli_columns_quotes_formulas_and_stays_in_the_organization(
    client: httpx.AsyncClient, team: Team
) -> None:
    await _other_org_event(client)
    # A hostile user agent on an audited request: a formula to a spreadsheet program.
    tokens = await login_in(client, team.users[Role.OWNER], team.slug)
    created = await client.post(
        "/api/api-keys",
        json={"name": '=HYPERLINK("http://evil.example")', "scopes": ["agents:read"]},
        headers={**bearer(tokens["access_token"]), "User-Agent": "=cmd|' /C calc'!A0"},
    )
    assert created.status_code == 201
    async with console_user(client, team, Role.AUDITOR) as auditor:
        exported = await auditor.http.get("/audit/export", params={"format": "csv"})
        assert exported.status_code == 200
        assert exported.headers["content-type"].startswith("text/csv")
        assert exported.headers["content-disposition"].startswith("attachment;")
        assert exported.headers["cache-control"] == "no-store"
        rows = list(csv.DictReader(io.StringIO(exported.text)))
        assert list(rows[0]) == list(AuditLogRead.model_fields)
        assert {row["org_id"] for row in rows} == {team.org_id}
        assert "globex-secret-project" not in exported.text
        [key_row] = [row for row in rows if row["action"] == "api_key_created"]
        assert key_row["user_agent"] == "'=cmd|' /C calc'!A0"
        # JSON lines of the filtered selection: one record per line.
        lines = await auditor.http.get("/audit/export", params={"format": "jsonl", "action": "member_added"})
        records = [json.loads(line) for line in lines.text.splitlines()]
        assert len(records) == 4  # admin, member, viewer, auditor joined
        assert {record["action"] for record in records} == {"member_added"}
        assert (await auditor.http.get("/audit/export", params={"format": "xlsx"})).status_code == 422


async def test_a_broken_chain_is_shown_broken_without_other_tenants_details(
    app: FastAPI, client: httpx.AsyncClient, team: Team
) -> None:
    async with app.state.sessionmaker() as session:
        await seal_with(session)  # what the background sealer has not sealed yet
        async with session.begin():
            # Someone with database access rewrites a sealed record (docs/audit.md: `edited`).
            edited = await session.execute(
                update(AuditLog).where(AuditLog.sequence == 1).values(resource_type="tampered")
            )
            assert edited.rowcount == 1
    async with console_user(client, team, Role.AUDITOR) as auditor:
        page = await auditor.http.get("/audit/verify")
        assert page.status_code == 200
        assert 'data-chain="broken"' in page.text
        assert "agentkeep audit verify" in page.text
        assert "BROKEN at sequence" not in page.text  # the CLI's findings: superusers only
