"""What the run engine asks: which OpenAI-compatible endpoint an organization's runs use.

    endpoint = await endpoint_for(session, secretbox, org_id)

answers the organization's provider, decrypted: the one named by `name` when given, else
the one named "default", else the organization's only provider. None when that leaves no
provider (none configured, or several and none named "default"): the deployment's own
OPENAI_BASE_URL / OPENAI_API_KEY apply then.

The base URL was checked for its form when saved; its address is checked on every request,
after DNS resolution, by the run engine's guarded transport, with `allowlist` (from
PROVIDER_ALLOWED_NETWORKS) naming the private hosts and networks it may reach.
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from agentkeep.providers.repository import ProviderRepository
from agentkeep.providers.service import decrypt_key
from agentkeep.runs.contract import ModelEndpoint
from agentkeep.security.secretbox import SecretBox
from agentkeep.tools.netguard import EgressAllowlist


async def endpoint_for(
    session: AsyncSession,
    secretbox: SecretBox | None,
    org_id: uuid.UUID,
    name: str | None = None,
    *,
    allowlist: EgressAllowlist | None = None,
) -> ModelEndpoint | None:
    """Raises EncryptionNotConfigured or ProviderKeyUnreadable (503 problems) when the
    provider exists but its key cannot be read; never falls back to another key then."""
    provider = await ProviderRepository(session).for_runs(org_id, name)
    if provider is None:
        return None
    return ModelEndpoint(
        base_url=provider.base_url,
        api_key=decrypt_key(secretbox, provider),
        allowlist=allowlist or EgressAllowlist(),
    )
