"""Re-encrypt every webhook's signing secrets under the newest SECRETS_ENCRYPTION_KEYS key
(part of `agentkeep providers reencrypt`, which rewrites every stored secret; the pass itself
is agentkeep.secret_rotation's)."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agentkeep.audit.actions import AuditAction
from agentkeep.secret_rotation import RotationReport, RowKind, rotate_rows
from agentkeep.security.secretbox import SecretBox
from agentkeep.webhooks.models import Webhook
from agentkeep.webhooks.repository import WebhookRepository

WebhookReencryptReport = RotationReport[uuid.UUID]


async def reencrypt_webhook_secrets(
    sessionmaker: async_sessionmaker[AsyncSession], secretbox: SecretBox
) -> WebhookReencryptReport:
    """Secrets no configured key decrypts are left unchanged and reported (rotate the
    webhook's secret)."""

    def rotate(webhook: Webhook) -> None:
        webhook.secret_ciphertext = secretbox.rotate(webhook.secret_ciphertext)
        if webhook.previous_secret_ciphertext is not None:
            webhook.previous_secret_ciphertext = secretbox.rotate(webhook.previous_secret_ciphertext)

    kind = RowKind[Webhook, uuid.UUID](
        ids=lambda session: WebhookRepository(session).all_ids(),
        locked=lambda session, webhook_id: WebhookRepository(session).locked(webhook_id),
        rotate=rotate,
        action=AuditAction.WEBHOOK_UPDATED,
        resource_type="webhook",
        details=lambda webhook: {"url": webhook.url},
        unreadable=lambda webhook: webhook.id,
    )
    return await rotate_rows(sessionmaker, kind)
