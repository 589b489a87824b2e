"""OpenAI-compatible clients shared by the runs of a process: one per endpoint.

Building a client per run cost what a run should not: a TLS context (the CA bundle parsed
again), a connection pool opened cold, a handshake per run. A runner keeps one client per
endpoint (base URL, key, address allowlist, resolver, timeout, retries) for its whole life,
so runs reuse warm connections; its pools (several per host, tools/guarded_transport.py)
admit together as many connections as the runner runs runs (each run has at most one model
request in flight). The least recently used clients are closed beyond `max_endpoints`
(organizations with their own providers).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import httpx2
from openai import AsyncOpenAI
from pydantic import SecretStr

from agentkeep.runs.contract import ModelEndpoint
from agentkeep.tools.context import Resolver
from agentkeep.tools.guarded_transport import GuardedTransport

OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
# OpenAI-compatible servers without authentication (vLLM, Ollama) still need a non-empty key.
NO_API_KEY = "not-set"
MAX_ENDPOINTS = 64


@dataclass(frozen=True, slots=True)
class _Key:
    base_url: str
    api_key: str
    endpoint: ModelEndpoint
    resolve: Resolver
    timeout: float
    max_retries: int


def _secret(value: SecretStr | None) -> str:
    return value.get_secret_value() if value else NO_API_KEY


def new_client(
    endpoint: ModelEndpoint, resolve: Resolver, *, timeout: float, max_retries: int, max_connections: int
) -> AsyncOpenAI:
    """A client whose every request (redirects included) passes the endpoint's address guard."""
    # No proxy from the environment: the guard must see (and pin) the real destination.
    http_client = httpx2.AsyncClient(
        transport=GuardedTransport(endpoint.allowlist, resolve, max_connections=max_connections),
        trust_env=False,
        follow_redirects=True,
    )
    return AsyncOpenAI(
        base_url=endpoint.base_url or OPENAI_DEFAULT_BASE_URL,
        api_key=_secret(endpoint.api_key),
        max_retries=max_retries,
        timeout=timeout,
        http_client=http_client,
    )


class ModelClients:
    def __init__(self, max_connections: int = 100, max_endpoints: int = MAX_ENDPOINTS) -> None:
        self.max_connections = max_connections
        self.max_endpoints = max_endpoints
        self._clients: OrderedDict[_Key, AsyncOpenAI] = OrderedDict()
        self.created = 0

    async def client_for(
        self, endpoint: ModelEndpoint, resolve: Resolver, *, request_timeout: float, max_retries: int
    ) -> AsyncOpenAI:
        key = _Key(
            endpoint.base_url or OPENAI_DEFAULT_BASE_URL,
            _secret(endpoint.api_key),
            endpoint,
            resolve,
            request_timeout,
            max_retries,
        )
        client = self._clients.get(key)
        if client is None:
            client = new_client(
                endpoint,
                resolve,
                timeout=request_timeout,
                max_retries=max_retries,
                max_connections=self.max_connections,
            )
            self._clients[key] = client
            self.created += 1
            while len(self._clients) > self.max_endpoints:
                _old, evicted = self._clients.popitem(last=False)
                await evicted.close()
        self._clients.move_to_end(key)
        return client

    async def aclose(self) -> None:
        clients = list(self._clients.values())
        self._clients.clear()
        for client in clients:
            await client.close()
