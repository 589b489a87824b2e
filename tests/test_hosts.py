"""ALLOWED_HOSTS: requests for other Host headers are refused with a 400 problem."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from asgi_lifespan import LifespanManager

from agentkeep.app import create_app
from agentkeep.config import ConfigError, Settings, load_settings
from agentkeep.security.hosts import host_allowed


@pytest.fixture
async def hosts_client(
    sqlite_url: str, make_settings: Callable[..., Settings]
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(database_url=sqlite_url, allowed_hosts="api.example.com,*.agents.example"))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.example.com") as http:
            yield http


@pytest.mark.parametrize("host", ["api.example.com", "API.example.com:8443", "eu.agents.example"])
async def test_listed_hosts_are_served(hosts_client: httpx.AsyncClient, host: str) -> None:
    response = await hosts_client.get("/health/live", headers={"Host": host})
    assert response.status_code == 200


@pytest.mark.parametrize("host", ["evil.example", "api.example.com.evil.example", "agents.example", ""])
async def test_unlisted_hosts_get_a_400_problem(hosts_client: httpx.AsyncClient, host: str) -> None:
    response = await hosts_client.get("/health/live", headers={"Host": host})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"


def test_host_matching_rules() -> None:
    assert host_allowed("a.b.example", ["*.b.example"])
    assert not host_allowed("b.example", ["*.b.example"])
    assert host_allowed("localhost:8000", ["localhost"])


def test_malformed_allowed_hosts_are_refused(jwt_secret: str) -> None:
    with pytest.raises(ConfigError, match="ALLOWED_HOSTS"):
        load_settings(_env_file=None, jwt_secret=jwt_secret, allowed_hosts="ok.example,http://bad/")
