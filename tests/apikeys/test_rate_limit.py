"""Each API key spends its own RATE_LIMIT_API budget, apart from its creator's."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from agentkeep.config import Settings
from agentkeep.rbac.permissions import Role
from tests.orgs.helpers import create_key, key_header, make_team
from tests.support.databases import REDIS_URL


@pytest.fixture
def settings(backend: str, database_url: str, make_settings: Callable[..., Settings]) -> Settings:
    redis_url = REDIS_URL if backend == "postgres" else None
    return make_settings(
        database_url=database_url,
        redis_url=redis_url,
        rate_limit_auth="1000/minute",
        rate_limit_api="12/minute",
    )


async def test_a_key_has_its_own_api_budget(client: httpx.AsyncClient) -> None:
    team = await make_team(client)
    key = await create_key(client, team.headers(Role.ADMIN), ["members:read"])
    path = f"/api/orgs/{team.org_id}/members"
    statuses = [(await client.get(path, headers=key_header(key))).status_code for _ in range(13)]
    assert statuses[:12] == [200] * 12
    assert statuses[12] == 429
    assert (await client.get(path, headers=team.headers(Role.ADMIN))).status_code == 200
