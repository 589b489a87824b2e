"""Secrets at rest: the stored column holds no plaintext; keys rotate (old keys decrypt, new
writes use the newest); an unreadable key is a clear problem, never a 500."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import Uuid, bindparam, text

from agentkeep.providers.endpoint import endpoint_for
from agentkeep.providers.reencrypt import reencrypt_all
from agentkeep.providers.service import EncryptionNotConfigured, ProviderKeyUnreadable
from agentkeep.rbac.permissions import Role
from agentkeep.security.secretbox import SecretBox, SecretDecryptionError, generate_key
from tests.orgs.helpers import make_team
from tests.providers.conftest import Served, provider_key
from tests.providers.helpers import create_provider, providers_path
from tests.support.secret_scan import token_shaped

Serve = Callable[..., AbstractAsyncContextManager[Served]]


async def _raw_row(app: FastAPI, provider_id: str) -> dict[str, Any]:
    async with app.state.engine.connect() as connection:
        row = (
            await connection.execute(
                text("SELECT * FROM providers WHERE id = :id").bindparams(bindparam("id", type_=Uuid())),
                {"id": uuid.UUID(provider_id)},
            )
        ).one()
    return dict(row._mapping)


async def _ciphertext(app: FastAPI, provider_id: str) -> str:
    return str((await _raw_row(app, provider_id))["api_key_ciphertext"])


def test_the_suite_wide_scan_recognises_provider_keys() -> None:
    assert token_shaped(f"leaked {provider_key()} here")


async def test_the_stored_row_holds_no_plaintext_key(
    app: FastAPI, client: httpx.AsyncClient, key_a: str
) -> None:
    team = await make_team(client)
    key = provider_key()
    created = await create_provider(client, team.org_id, team.headers(Role.OWNER), key)
    row = await _raw_row(app, created["id"])
    dumped = repr(row)
    assert key not in dumped
    assert key[:-4] not in dumped
    assert row["key_hint"] == key[-4:]
    # The column is a Fernet token that the configured key opens to the key.
    assert SecretBox([key_a]).decrypt(row["api_key_ciphertext"]) == key


async def test_rotation_old_key_still_reads_and_new_writes_use_the_newest_key(
    client: httpx.AsyncClient, serve: Serve, key_a: str
) -> None:
    team = await make_team(client)
    first, second = provider_key(), provider_key()
    created = await create_provider(client, team.org_id, team.headers(Role.OWNER), first)
    key_b = generate_key()
    async with serve([key_b, key_a]) as (app, http):
        path = providers_path(team.org_id, created["id"])
        read = await http.get(path, headers=team.headers(Role.OWNER))
        assert read.json()["key_status"] == "ok"
        async with app.state.sessionmaker() as session:
            endpoint = await endpoint_for(session, app.state.secretbox, uuid.UUID(team.org_id))
        assert endpoint is not None
        assert endpoint.api_key is not None
        assert endpoint.api_key.get_secret_value() == first
        # Until rewritten, the value is still under A only.
        with pytest.raises(SecretDecryptionError):
            SecretBox([key_b]).decrypt(await _ciphertext(app, created["id"]))
        rotated = await http.patch(path, json={"api_key": second}, headers=team.headers(Role.OWNER))
        assert rotated.status_code == 200, rotated.text
        stored = await _ciphertext(app, created["id"])
        assert SecretBox([key_b]).decrypt(stored) == second
        with pytest.raises(SecretDecryptionError):
            SecretBox([key_a]).decrypt(stored)


async def test_reencrypt_moves_every_stored_key_to_the_newest_key(
    app: FastAPI, client: httpx.AsyncClient, serve: Serve, key_a: str
) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    keys = {name: provider_key() for name in ("one", "two")}
    ids = {
        name: (await create_provider(client, team.org_id, owner, key, name=name))["id"]
        for name, key in keys.items()
    }
    key_b = generate_key()
    async with serve([key_b, key_a]) as (rotated_app, _):
        report = await reencrypt_all(rotated_app.state.sessionmaker, rotated_app.state.secretbox)
        assert report.rewritten == 2
        assert report.unreadable == []
        for name, provider_id in ids.items():
            assert SecretBox([key_b]).decrypt(await _ciphertext(rotated_app, provider_id)) == keys[name]
    # Key A can now be dropped: an instance with B alone reads every provider.
    async with serve([key_b]) as (_, http):
        items = (await http.get(providers_path(team.org_id), headers=owner)).json()["items"]
        assert sorted(item["key_status"] for item in items) == ["ok", "ok"]


async def test_a_removed_key_is_reported_and_never_a_500(client: httpx.AsyncClient, serve: Serve) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    created = await create_provider(client, team.org_id, owner, provider_key())
    path = providers_path(team.org_id, created["id"])
    async with serve([generate_key()]) as (app, http):
        read = await http.get(path, headers=owner)
        assert read.status_code == 200
        assert read.json()["key_status"] == "unreadable"
        async with app.state.sessionmaker() as session:
            with pytest.raises(ProviderKeyUnreadable) as caught:
                await endpoint_for(session, app.state.secretbox, uuid.UUID(team.org_id))
        assert caught.value.status_code == 503
        assert "SECRETS_ENCRYPTION_KEYS" in caught.value.detail
        report = await reencrypt_all(app.state.sessionmaker, app.state.secretbox)
        assert report.rewritten == 0
        assert [item.name for item in report.unreadable] == ["default"]
        # Setting a new key repairs the provider.
        repaired = await http.patch(path, json={"api_key": provider_key()}, headers=owner)
        assert repaired.status_code == 200
        assert repaired.json()["key_status"] == "ok"


async def test_without_an_encryption_key_creating_is_refused_with_a_clear_problem(
    client: httpx.AsyncClient, serve: Serve
) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    created = await create_provider(client, team.org_id, owner, provider_key())
    async with serve([]) as (app, http):
        assert app.state.secretbox is None
        refused = await http.post(
            providers_path(team.org_id),
            json={"name": "other", "base_url": "https://models.example.com/v1", "api_key": provider_key()},
            headers=owner,
        )
        assert refused.status_code == 503
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["type"] == "urn:agentkeep:problem:encryption-not-configured"
        assert "SECRETS_ENCRYPTION_KEYS" in refused.json()["detail"]
        path = providers_path(team.org_id, created["id"])
        assert (await http.patch(path, json={"api_key": provider_key()}, headers=owner)).status_code == 503
        items = (await http.get(providers_path(team.org_id), headers=owner)).json()["items"]
        assert [(item["name"], item["key_status"]) for item in items] == [("default", "no_encryption_key")]
        async with app.state.sessionmaker() as session:
            with pytest.raises(EncryptionNotConfigured):
                await endpoint_for(session, None, uuid.UUID(team.org_id))
