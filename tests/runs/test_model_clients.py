"""A runner's model clients: one per endpoint, shared across runs, the oldest closed beyond
the bound (docs/runs-execution.md)."""

from __future__ import annotations

from pydantic import SecretStr

from agentkeep.runs.contract import ModelEndpoint
from agentkeep.runs.model_clients import ModelClients
from agentkeep.tools.context import system_resolve


async def test_runs_of_one_endpoint_share_a_client_and_others_get_their_own() -> None:
    clients = ModelClients(max_connections=8, max_endpoints=2)
    first = ModelEndpoint(base_url="https://models.example/v1", api_key=SecretStr("key-a"))
    same = ModelEndpoint(base_url="https://models.example/v1", api_key=SecretStr("key-a"))
    other_key = ModelEndpoint(base_url="https://models.example/v1", api_key=SecretStr("key-b"))
    other_host = ModelEndpoint(base_url="https://elsewhere.example/v1", api_key=SecretStr("key-a"))
    a = await clients.client_for(first, system_resolve, request_timeout=30, max_retries=2)
    assert await clients.client_for(same, system_resolve, request_timeout=30, max_retries=2) is a
    b = await clients.client_for(other_key, system_resolve, request_timeout=30, max_retries=2)
    assert b is not a
    d = await clients.client_for(first, system_resolve, request_timeout=5, max_retries=2)
    assert d is not a  # another timeout is another client
    # Three seen, two kept: the least recently used (a) was closed.
    assert (a.is_closed(), b.is_closed(), d.is_closed()) == (True, False, False)
    c = await clients.client_for(other_host, system_resolve, request_timeout=30, max_retries=2)
    assert (b.is_closed(), d.is_closed(), c.is_closed()) == (True, False, False)
    assert clients.created == 4
    await clients.aclose()
    assert d.is_closed()
    assert c.is_closed()
