"""Re-encrypt every webhook's signing secrets under the newest SECRETS_ENCRYPTION_KEYS key
(part of `agentkeep providers reencrypt`, which rewrites every stored secret)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agentkeep.audit.actions import ActorType, AuditAction
from agentkeep.audit.service import record
from agentkeep.context import RequestContext
from agentkeep.security.secretbox import SecretBox, SecretDecryptionError
from agentkeep.webhooks.repository import WebhookRepository


@dataclass(slots=True)
class WebhookReencryptReport:
    rewritten: int = 0
    unreadable: list[uuid.UUID] = field(default_factory=list)


async def reencrypt_webhook_secrets(
    sessionmaker: async_sessionmaker[AsyncSession], secretbox: SecretBox
) -> WebhookReencryptReport:
    """One short transaction per webhook (row locked, rewritten, audited); secrets no
    configured key decrypts are left unchanged and reported (rotate the webhook's secret)."""
    report = WebhookReencryptReport()
    async with sessionmaker() as session:
        ids = await WebhookRepository(session).all_ids()
    for webhook_id in ids:
        async with sessionmaker() as session, session.begin():
            webhook = await WebhookRepository(session).locked(webhook_id)
            if webhook is None:  # deleted meanwhile
                continue
            try:
                webhook.secret_ciphertext = secretbox.rotate(webhook.secret_ciphertext)
                if webhook.previous_secret_ciphertext is not None:
                    webhook.previous_secret_ciphertext = secretbox.rotate(webhook.previous_secret_ciphertext)
            except SecretDecryptionError:
                report.unreadable.append(webhook.id)
                continue
            await record(
                session,
                AuditAction.WEBHOOK_UPDATED,
                context=RequestContext.system(),
                org_id=webhook.org_id,
                actor_type=ActorType.SYSTEM,
                resource_type="webhook",
                resource_id=webhook.id,
                details={"url": webhook.url, "changed": ["encryption_key"]},
            )
            report.rewritten += 1
    return report
