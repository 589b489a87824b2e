"""Re-encrypt every stored secret under the newest SECRETS_ENCRYPTION_KEYS key, so an old key
can then be removed from the list (`agentkeep providers reencrypt`): provider API keys, and the
headers of MCP servers (agentkeep.mcp.reencrypt), webhooks' signing secrets
(agentkeep.webhooks.reencrypt)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agentkeep.audit.actions import ActorType, AuditAction
from agentkeep.audit.service import record
from agentkeep.context import RequestContext
from agentkeep.mcp.reencrypt import McpReencryptReport, reencrypt_mcp_headers
from agentkeep.providers.repository import ProviderRepository
from agentkeep.security.secretbox import SecretBox, SecretDecryptionError
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
    """One short transaction per provider (row locked, rewritten, audited), so a long sweep
    never holds the audit chain or many rows at once. A key no configured key decrypts is
    left unchanged and reported."""
    report = ReencryptReport()
    async with sessionmaker() as session:
        ids = await ProviderRepository(session).all_ids()
    for provider_id in ids:
        async with sessionmaker() as session, session.begin():
            provider = await ProviderRepository(session).locked(provider_id)
            if provider is None:  # deleted meanwhile
                continue
            try:
                provider.api_key_ciphertext = secretbox.rotate(provider.api_key_ciphertext)
            except SecretDecryptionError:
                report.unreadable.append(UnreadableProvider(provider.org_id, provider.id, provider.name))
                continue
            await record(
                session,
                AuditAction.PROVIDER_UPDATED,
                context=RequestContext.system(),
                org_id=provider.org_id,
                actor_type=ActorType.SYSTEM,
                resource_type="provider",
                resource_id=provider.id,
                details={"name": provider.name, "changed": ["encryption_key"]},
            )
            report.rewritten += 1
    report.mcp = await reencrypt_mcp_headers(sessionmaker, secretbox)
    report.webhooks = await reencrypt_webhook_secrets(sessionmaker, secretbox)
    return report
