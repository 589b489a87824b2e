"""Re-encrypt every stored secret under the newest SECRETS_ENCRYPTION_KEYS key, so an old key
can then be removed from the list (`agentkeep providers reencrypt`): provider API keys, and the
headers of MCP servers (agentkeep.mcp.reencrypt), webhooks' signing secrets
(agentkeep.webhooks.reencrypt)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agentkeep.audit.actions import AuditAction
from agentkeep.mcp.reencrypt import McpReencryptReport, reencrypt_mcp_headers
from agentkeep.providers.models import Provider
from agentkeep.providers.repository import ProviderRepository
from agentkeep.secret_rotation import RowKind, rotate_rows
from agentkeep.security.secretbox import SecretBox
from agentkeep.webhooks.reencrypt import WebhookReencryptReport, reencrypt_webhook_secrets


@dataclass(frozen=True, slots=True)
class UnreadableProvider:
    org_id: uuid.UUID
    provider_id: uuid.UUID
    name: str


@dataclass(slots=True)
class ReencryptReport:
    rewritten: int = 0
    unreadable: list[UnreadableProvider] = field(default_factory=list)
    mcp: McpReencryptReport = field(default_factory=McpReencryptReport)
    webhooks: WebhookReencryptReport = field(default_factory=WebhookReencryptReport)


async def reencrypt_all(
    sessionmaker: async_sessionmaker[AsyncSession], secretbox: SecretBox
) -> ReencryptReport:
    """Provider keys no configured key decrypts are left unchanged and reported; then the
    MCP servers' headers and the webhooks' secrets (agentkeep.secret_rotation's pass each)."""

    def rotate(provider: Provider) -> None:
        provider.api_key_ciphertext = secretbox.rotate(provider.api_key_ciphertext)

    kind = RowKind[Provider, UnreadableProvider](
        ids=lambda session: ProviderRepository(session).all_ids(),
        locked=lambda session, provider_id: ProviderRepository(session).locked(provider_id),
        rotate=rotate,
        action=AuditAction.PROVIDER_UPDATED,
        resource_type="provider",
        details=lambda provider: {"name": provider.name},
        unreadable=lambda provider: UnreadableProvider(provider.org_id, provider.id, provider.name),
    )
    providers = await rotate_rows(sessionmaker, kind)
    return ReencryptReport(
        rewritten=providers.rewritten,
        unreadable=providers.unreadable,
        mcp=await reencrypt_mcp_headers(sessionmaker, secretbox),
        webhooks=await reencrypt_webhook_secrets(sessionmaker, secretbox),
    )
