"""Which model endpoint a run uses: the organization's provider, else the deployment's.

Resolved by the driver when it builds a run's request. Also home of `RunSetupError`, the
failure of a run that cannot start at all.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from typing import Protocol

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from agentkeep.config import Settings
from agentkeep.errors import AppError
from agentkeep.providers.endpoint import endpoint_for as provider_endpoint
from agentkeep.runs.contract import ModelEndpoint
from agentkeep.runs.states import StopReason
from agentkeep.security.secretbox import SecretBox
from agentkeep.tools.netguard import EgressAllowlist


class RunSetupError(Exception):
    """The run cannot start at all (its pinned agent version is gone, say)."""

    def __init__(self, message: str, stop_reason: StopReason = StopReason.INTERNAL_ERROR) -> None:
        super().__init__(message)
        self.stop_reason = stop_reason


class EndpointResolver(Protocol):
    """Which model endpoint an organization's runs use (default: `organization_endpoint`).
    `has_provider` False: the caller knows the organization has no provider (none is read)."""

    def __call__(
        self, session: AsyncSession, org_id: uuid.UUID, /, *, has_provider: bool = True
    ) -> Awaitable[ModelEndpoint | None]: ...


def provider_allowlist(settings: Settings) -> EgressAllowlist:
    return EgressAllowlist.parse(settings.provider_allowed_networks)


def deployment_endpoint(settings: Settings) -> EndpointResolver:
    # The operator chose OPENAI_BASE_URL, so its host may be private (a model server beside
    # the deployment); organizations' providers get PROVIDER_ALLOWED_NETWORKS only.
    allowlist = provider_allowlist(settings)
    if settings.openai_base_url is not None:
        allowlist = allowlist.with_host(httpx.URL(settings.openai_base_url).host)

    async def endpoint_for(
        _session: AsyncSession, _org_id: uuid.UUID, *, has_provider: bool = True
    ) -> ModelEndpoint | None:
        if settings.openai_base_url is None and settings.openai_api_key is None:
            return None
        return ModelEndpoint(
            base_url=settings.openai_base_url, api_key=settings.openai_api_key, allowlist=allowlist
        )

    return endpoint_for


def organization_endpoint(settings: Settings, secretbox: SecretBox | None) -> EndpointResolver:
    """The organization's provider (docs/providers.md), else the deployment's endpoint.

    A provider whose key cannot be read fails the run (model_error); it never falls back to
    another key.
    """
    deployment = deployment_endpoint(settings)
    allowlist = provider_allowlist(settings)

    async def endpoint_for(
        session: AsyncSession, org_id: uuid.UUID, *, has_provider: bool = True
    ) -> ModelEndpoint | None:
        if not has_provider:
            return await deployment(session, org_id)
        try:
            endpoint = await provider_endpoint(session, secretbox, org_id, allowlist=allowlist)
        except AppError as exc:
            raise RunSetupError(
                "the organization's model provider key cannot be read", StopReason.MODEL_ERROR
            ) from exc
        return endpoint if endpoint is not None else await deployment(session, org_id)

    return endpoint_for
