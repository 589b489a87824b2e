"""Model ids to pydantic-ai models: `test` (offline) and `openai:<name>` (an OpenAI-compatible endpoint)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx2
from openai import AsyncOpenAI
from pydantic_ai.models import Model
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

from agentkeep.runs.contract import RunRequest
from agentkeep.runs.offline_model import MODEL_NAME, offline_model
from agentkeep.tools.context import Resolver, system_resolve
from agentkeep.tools.guarded_transport import GuardedTransport

OPENAI_PREFIX = "openai:"
OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
# OpenAI-compatible servers without authentication (vLLM, Ollama) still need a non-empty key.
NO_API_KEY = "not-set"


class ModelUnavailable(Exception):
    """The run's model cannot be used (unknown id, no endpoint); the message is safe to show."""


@asynccontextmanager
async def open_model(request: RunRequest, resolve: Resolver = system_resolve) -> AsyncIterator[Model]:
    """The pydantic-ai model for `request.spec.model`; HTTP clients it creates are closed on exit.

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
    # No proxy from the environment: the guard must see (and pin) the real destination.
    http_client = httpx2.AsyncClient(
        transport=GuardedTransport(endpoint.allowlist, resolve), trust_env=False, follow_redirects=True
    )
    client = AsyncOpenAI(
        base_url=endpoint.base_url or OPENAI_DEFAULT_BASE_URL,
        api_key=endpoint.api_key.get_secret_value() if endpoint.api_key else NO_API_KEY,
        max_retries=request.max_retries,
        timeout=request.request_timeout_seconds,
        http_client=http_client,
    )
    try:
        yield OpenAIChatModel(name, provider=OpenAIProvider(openai_client=client))
    finally:
        await client.close()
        await http_client.aclose()
