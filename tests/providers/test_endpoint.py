"""endpoint_for: which provider an organization's runs use, decrypted for the run engine."""

from __future__ import annotations

import uuid

import httpx
from fastapi import FastAPI

from agentkeep.providers.endpoint import endpoint_for
from agentkeep.rbac.permissions import Role
from agentkeep.runs.contract import ModelEndpoint
from tests.orgs.helpers import Team, make_team
from tests.providers.conftest import provider_key
from tests.providers.helpers import create_provider


async def _endpoint(app: FastAPI, team: Team, name: str | None = None) -> ModelEndpoint | None:
    async with app.state.sessionmaker() as session:
        return await endpoint_for(session, app.state.secretbox, uuid.UUID(team.org_id), name)


def _pair(endpoint: ModelEndpoint | None) -> tuple[str | None, str | None]:
    assert endpoint is not None
    assert endpoint.api_key is not None
    return endpoint.base_url, endpoint.api_key.get_secret_value()


async def test_the_default_provider_or_the_only_one_else_none(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    assert await _endpoint(app, team) is None
    vllm_key, openai_key, default_key = provider_key(), provider_key(), provider_key()
    await create_provider(
        client, team.org_id, owner, vllm_key, name="vllm", base_url="https://vllm.example/v1"
    )
    assert _pair(await _endpoint(app, team)) == ("https://vllm.example/v1", vllm_key)
    await create_provider(
        client, team.org_id, owner, openai_key, name="openai", base_url="https://oai.example/v1"
    )
    # Two providers, neither named "default": the deployment's own endpoint applies.
    assert await _endpoint(app, team) is None
    assert _pair(await _endpoint(app, team, "openai")) == ("https://oai.example/v1", openai_key)
    assert await _endpoint(app, team, "missing") is None
    await create_provider(
        client, team.org_id, owner, default_key, name="default", base_url="https://d.example/v1"
    )
    assert _pair(await _endpoint(app, team)) == ("https://d.example/v1", default_key)


async def test_another_organizations_provider_is_never_used(app: FastAPI, client: httpx.AsyncClient) -> None:
    acme = await make_team(client, "acme", "olivia")
    globex = await make_team(client, "globex", "gus")
    await create_provider(client, acme.org_id, acme.headers(Role.OWNER), provider_key())
    assert await _endpoint(app, globex) is None
    assert await _endpoint(app, globex, "default") is None
