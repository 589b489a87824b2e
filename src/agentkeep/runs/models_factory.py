"""Model ids to pydantic-ai models: `test` (offline) and `openai:<name>` (an OpenAI-compatible endpoint)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from pydantic_ai.models import Model
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

from agentkeep.runs.contract import RunRequest
from agentkeep.runs.model_clients import ModelClients, new_client
from agentkeep.runs.offline_model import MODEL_NAME, offline_model
from agentkeep.tools.context import Resolver, system_resolve

OPENAI_PREFIX = "openai:"


class ModelUnavailable(Exception):
    """The run's model cannot be used (unknown id, no endpoint); the message is safe to show."""


@asynccontextmanager
async def open_model(
    request: RunRequest, resolve: Resolver = system_resolve, clients: ModelClients | None = None
) -> AsyncIterator[Model]:
    """The pydantic-ai model for `request.spec.model`. With `clients` (a runner's), the
    endpoint's shared client is used; without, one is made for the run and closed on exit.

    `openai:<name>` talks to `request.endpoint` with `request.request_timeout_seconds` per
    attempt and at most `request.max_retries` retries. The base URL and key come from the
    endpoint, never from the `OPENAI_BASE_URL` / `OPENAI_API_KEY` environment variables.
    Every request (redirects included) is resolved with `resolve` and refused before
    connecting when its host is not a public address the endpoint's allowlist permits.
    """
    model_id = request.spec.model
    if model_id == MODEL_NAME:
        yield offline_model()
        return
    name = model_id.removeprefix(OPENAI_PREFIX)
    if not model_id.startswith(OPENAI_PREFIX) or not name:
        raise ModelUnavailable(f"unknown model {model_id[:100]!r}")
    endpoint = request.endpoint
    if endpoint is None or (endpoint.base_url is None and endpoint.api_key is None):
        raise ModelUnavailable("no OpenAI-compatible endpoint configured")
    timeout, retries = request.request_timeout_seconds, request.max_retries
    if clients is not None:  # the runner's: kept open for the next run
        client = await clients.client_for(endpoint, resolve, request_timeout=timeout, max_retries=retries)
        yield OpenAIChatModel(name, provider=OpenAIProvider(openai_client=client))
        return
    client = new_client(endpoint, resolve, timeout=timeout, max_retries=retries, max_connections=1)
    try:
        yield OpenAIChatModel(name, provider=OpenAIProvider(openai_client=client))
    finally:
        await client.close()
