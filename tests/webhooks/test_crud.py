"""Registering, reading, changing, rotating and removing webhooks: the secret is shown once and
stored encrypted, changes are versioned and audited without a secret, and other
organizations' webhooks do not exist."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, text

from agentkeep.rbac.permissions import Role
from agentkeep.security.secretbox import SecretBox
from agentkeep.webhooks.models import Webhook
from tests.integration.conftest import audit_rows
from tests.orgs.helpers import make_team
from tests.webhooks.conftest import Receiver
from tests.webhooks.helpers import create_hook, hooks_path, received_count, settled

pytestmark = pytest.mark.usefixtures("worker")


async def table_text(app: FastAPI, table: str) -> str:
    async with app.state.engine.connect() as connection:
        rows = (await connection.execute(text(f"SELECT * FROM {table}"))).all()  # noqa: S608 (a fixed name)
    return repr([dict(row._mapping) for row in rows])


async def test_the_secret_is_shown_once_and_stored_encrypted(
    app: FastAPI, client: httpx.AsyncClient, receiver: Receiver, encryption_key: str
) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    response = await client.post(
        hooks_path(team.org_id), json={"url": receiver.url(), "events": ["run.completed"]}, headers=owner
    )
    assert response.status_code == 201, response.text
    created = response.json()
    secret = created.pop("secret")
    assert response.headers["ETag"] == '"1"'
    assert response.headers["Location"] == hooks_path(team.org_id, created["id"])
    read = await client.get(hooks_path(team.org_id, created["id"]), headers=owner)
    listed = await client.get(hooks_path(team.org_id), headers=owner)
    assert read.json() == created
    assert listed.json() == {"items": [created], "next_cursor": None}
    for answer in (read, listed):
        assert secret not in answer.text
        assert secret.removeprefix("whsec_") not in answer.text
    assert secret.removeprefix("whsec_") not in await table_text(app, "webhooks")
    assert secret.removeprefix("whsec_") not in await table_text(app, "audit_logs")
    async with app.state.sessionmaker() as session:
        row = (await session.scalars(select(Webhook))).one()
    assert SecretBox([encryption_key]).decrypt(row.secret_ciphertext) == secret
    (audited,) = await audit_rows(app, "webhook_created")
    assert audited.details["url"] == receiver.url()


async def test_changes_are_versioned_audited_and_idempotent_creates_replay(
    app: FastAPI, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    body = {"url": receiver.url(), "events": ["run.completed"]}
    keyed = {**owner, "Idempotency-Key": "create-hook-1"}
    first = await client.post(hooks_path(team.org_id), json=body, headers=keyed)
    again = await client.post(hooks_path(team.org_id), json=body, headers=keyed)
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert "secret" not in again.json()
    hook_id = first.json()["id"]
    stale = await client.patch(
        hooks_path(team.org_id, hook_id),
        json={"events": ["run.failed"]},
        headers={**owner, "If-Match": '"7"'},
    )
    assert stale.status_code == 412
    changed = await client.patch(
        hooks_path(team.org_id, hook_id),
        json={"events": ["run.failed"]},
        headers={**owner, "If-Match": '"1"'},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["events"] == ["run.failed"]
    assert changed.headers["ETag"] == '"2"'
    unknown = await client.patch(
        hooks_path(team.org_id, hook_id), json={"events": ["run.exploded"]}, headers=owner
    )
    assert unknown.status_code == 422
    deleted = await client.delete(hooks_path(team.org_id, hook_id), headers=owner)
    assert deleted.status_code == 204
    assert (await client.get(hooks_path(team.org_id, hook_id), headers=owner)).status_code == 404
    assert len(await audit_rows(app, "webhook_updated")) == 1
    assert len(await audit_rows(app, "webhook_deleted")) == 1


async def test_members_cannot_manage_webhooks_and_other_organizations_see_none(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    acme = await make_team(client, "acme", "olivia")
    globex = await make_team(client, "globex", "gus")
    hook = await create_hook(client, acme.org_id, acme.headers(Role.OWNER), receiver.url())
    member = await client.get(hooks_path(acme.org_id), headers=acme.headers(Role.MEMBER))
    assert member.status_code == 403
    for path in (hooks_path(acme.org_id, hook["id"]), hooks_path(globex.org_id, hook["id"])):
        assert (await client.get(path, headers=globex.headers(Role.OWNER))).status_code == 404
        assert (await client.delete(path, headers=globex.headers(Role.OWNER))).status_code == 404


async def test_a_rotated_secret_and_the_previous_one_both_sign_during_the_overlap(
    app: FastAPI, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    hook = await create_hook(client, team.org_id, owner, receiver.url())
    rotated = await client.post(hooks_path(team.org_id, hook["id"], "/rotate-secret"), headers=owner)
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    assert new != hook["secret"]
    assert rotated.json()["previous_secret_expires_at"] is not None
    receiver.control(secrets=[hook["secret"], new])
    await client.post(hooks_path(team.org_id, hook["id"], "/ping"), headers=owner)
    (request,) = await received_count(receiver, 1, within=15)
    assert request["verified"] == [True, True]
    assert len(request["headers"]["webhook-signature"].split(" ")) == 2
    # Without an overlap the old secret stops signing at once.
    final = await client.post(
        hooks_path(team.org_id, hook["id"], "/rotate-secret"), json={"overlap_seconds": 0}, headers=owner
    )
    newest = final.json()["secret"]
    receiver.control(secrets=[new, newest])
    await client.post(hooks_path(team.org_id, hook["id"], "/ping"), headers=owner)
    requests = await received_count(receiver, 2, within=15)
    assert requests[1]["verified"] == [False, True]
    rotations = await audit_rows(app, "webhook_secret_rotated")
    assert [r.details["overlap_seconds"] for r in rotations] == [86_400, 0]
    audit_text = await table_text(app, "audit_logs")
    assert not any(s.removeprefix("whsec_") in audit_text for s in (new, newest))


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data", "metadata"),
        ("http://10.0.0.5/hook", "private"),
        ("http://127.0.0.2:9/hook", "loopback outside the allowlist"),
        ("http://[::ffff:10.0.0.5]/hook", "private, IPv4-mapped"),
        ("https://user:pw@hooks.example.com/hook", "credentials"),
        ("ftp://hooks.example.com/hook", "scheme"),
    ],
)
async def test_urls_the_guard_would_refuse_are_refused_when_saved(
    client: httpx.AsyncClient, url: str, reason: str
) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    response = await client.post(
        hooks_path(team.org_id), json={"url": url, "events": ["run.completed"]}, headers=owner
    )
    assert response.status_code == 422, (reason, response.text)
    assert response.headers["content-type"] == "application/problem+json"
    assert (await client.get(hooks_path(team.org_id), headers=owner)).json()["items"] == []


@pytest.mark.parametrize("webhook_settings", [{"webhook_retry_schedule": ""}])
async def test_a_name_resolving_to_loopback_is_refused_at_delivery(
    client: httpx.AsyncClient, receiver: Receiver, webhook_settings: dict[str, Any]
) -> None:
    # WEBHOOK_ALLOWED_NETWORKS lists the address 127.0.0.1, not the name localhost.
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    hook = await create_hook(client, team.org_id, owner, receiver.url(host="localhost"))
    await client.post(hooks_path(team.org_id, hook["id"], "/ping"), headers=owner)
    (logged,) = await settled(client, team.org_id, owner, hook["id"], 1, within=15)
    assert logged["status"] == "failed"
    assert "refused by the network guard" in logged["error"]
    assert receiver.received() == []


@pytest.mark.parametrize("webhook_settings", [{"webhook_retry_schedule": ""}])
async def test_redirects_are_not_followed(
    client: httpx.AsyncClient, receiver: Receiver, webhook_settings: dict[str, Any]
) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    hook = await create_hook(client, team.org_id, owner, receiver.url())
    receiver.control(secrets=[hook["secret"]], fail=1, status=307)
    await client.post(hooks_path(team.org_id, hook["id"], "/ping"), headers=owner)
    (logged,) = await settled(client, team.org_id, owner, hook["id"], 1, within=15)
    assert logged["status"] == "failed"
    assert logged["response_status"] == 307
    assert logged["error"] == "redirects are not followed"
    assert len(receiver.received()) == 1


async def test_reencryption_rewrites_both_signing_secrets_under_the_newest_key(
    app: FastAPI, client: httpx.AsyncClient, receiver: Receiver, encryption_key: str
) -> None:
    """`agentkeep providers reencrypt` rewrites a webhook's secret and, during a rotation's
    overlap, its previous one; a key it cannot read leaves the webhook reported, unchanged."""
    from agentkeep.providers.reencrypt import reencrypt_all
    from agentkeep.security.secretbox import generate_key

    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    hook = await create_hook(client, team.org_id, owner, receiver.url())
    rotated = await client.post(hooks_path(team.org_id, hook["id"], "/rotate-secret"), headers=owner)
    assert rotated.status_code == 200, rotated.text

    stranger = await reencrypt_all(app.state.sessionmaker, SecretBox([generate_key()]))
    assert [str(webhook_id) for webhook_id in stranger.webhooks.unreadable] == [hook["id"]]
    newest = generate_key()
    report = await reencrypt_all(app.state.sessionmaker, SecretBox([newest, encryption_key]))

    assert (report.webhooks.rewritten, report.webhooks.unreadable) == (1, [])
    async with app.state.sessionmaker() as session:
        row = (await session.scalars(select(Webhook))).one()
    assert row.previous_secret_ciphertext is not None
    only_newest = SecretBox([newest])
    assert only_newest.decrypt(row.secret_ciphertext) == rotated.json()["secret"]
    assert only_newest.decrypt(row.previous_secret_ciphertext) == hook["secret"]
    audited = [
        r for r in await audit_rows(app, "webhook_updated") if r.details.get("changed") == ["encryption_key"]
    ]
    assert len(audited) == 1
