"""Webhook rules: register, list, change, remove, rotate the secret, read and replay the
delivery log, ping. No HTTP objects, never a commit.

A new secret is encrypted with the newest SECRETS_ENCRYPTION_KEYS key before it reaches the
session, returned once to its creator, and never audited. Redelivery and ping only queue a
delivery (sent by the queue, like any other): no request waits on a receiver.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from agentkeep.agents.service import entity_tag, precondition_holds
from agentkeep.audit.actions import ActorType, AuditAction
from agentkeep.audit.service import AuditService
from agentkeep.config import Settings
from agentkeep.errors import Conflict, NotFound, PreconditionFailed
from agentkeep.idempotency.service import IdempotencyScope, IdempotencyStore, fingerprint
from agentkeep.mcp.service import McpActor
from agentkeep.orgs.service import OrgNotFound
from agentkeep.security.secretbox import SecretBox
from agentkeep.webhooks import jobs
from agentkeep.webhooks.egress import WebhookEgress
from agentkeep.webhooks.events import PING, envelope
from agentkeep.webhooks.keys import encrypt
from agentkeep.webhooks.models import Webhook, WebhookDelivery
from agentkeep.webhooks.outbox import new_delivery
from agentkeep.webhooks.repository import WebhookRepository
from agentkeep.webhooks.schemas import WebhookCreate, WebhookRotate, WebhookUpdate
from agentkeep.webhooks.signing import message_id, new_secret

IDEMPOTENCY_SCOPE = "webhooks.create"
WebhookActor = McpActor


class WebhookNotFound(NotFound):
    title = "Webhook not found"


class DeliveryNotFound(NotFound):
    title = "Webhook delivery not found"


class WebhookVersionMismatch(PreconditionFailed):
    type_slug = "webhook-version-mismatch"
    title = "Webhook version mismatch"


@dataclass(frozen=True, slots=True)
class CreatedWebhook:
    webhook: Webhook
    # Only on a fresh create: a replayed Idempotency-Key answers the webhook without it.
    secret: str | None
    replayed: bool


class WebhookService:
    def __init__(
        self,
        session: AsyncSession,
        audit: AuditService,
        secretbox: SecretBox | None,
        egress: WebhookEgress,
        settings: Settings,
    ) -> None:
        self.session = session
        self.repository = WebhookRepository(session)
        self.idempotency = IdempotencyStore(session)
        self.audit = audit
        self.secretbox = secretbox
        self.egress = egress
        self.settings = settings

    async def create(
        self, actor: WebhookActor, org_id: uuid.UUID, body: WebhookCreate, idempotency_key: str | None
    ) -> CreatedWebhook:
        org_id = current_org(actor, org_id)
        self.egress.check_url(body.url)
        secret = new_secret()
        ciphertext = encrypt(self.secretbox, secret)
        webhook_id = uuid.uuid4()
        if idempotency_key is not None:
            scope = IdempotencyScope(org_id, actor.principal, IDEMPOTENCY_SCOPE)
            document = body.model_dump(mode="json")
            earlier = await self.idempotency.claim(scope, idempotency_key, fingerprint(document), webhook_id)
            if earlier is not None:
                found = await self.repository.get_in_org(org_id, earlier)
                if found is None:
                    raise Conflict(
                        "The webhook created with this Idempotency-Key has since been deleted; "
                        "use a new key.",
                        extra={"resource_id": str(earlier)},
                    )
                return CreatedWebhook(found, secret=None, replayed=True)
        now = datetime.now(UTC)
        webhook = Webhook(
            id=webhook_id,
            org_id=org_id,
            created_by=actor.user_id,
            url=body.url,
            description=body.description,
            events=[str(event) for event in body.events],
            include_content=body.include_content,
            enabled=body.enabled,
            consecutive_failures=0,
            secret_ciphertext=ciphertext,
            version=1,
            created_at=now,
            updated_at=now,
        )
        await self.repository.add(webhook)
        await self._record(AuditAction.WEBHOOK_CREATED, actor, webhook, described(webhook))
        return CreatedWebhook(webhook, secret=secret, replayed=False)

    async def page(
        self, actor: WebhookActor, org_id: uuid.UUID, limit: int, cursor: str | None
    ) -> tuple[list[Webhook], str | None]:
        return await self.repository.page_in_org(current_org(actor, org_id), limit, cursor)

    async def get(self, actor: WebhookActor, org_id: uuid.UUID, webhook_id: uuid.UUID) -> Webhook:
        webhook = await self.repository.get_in_org(current_org(actor, org_id), webhook_id)
        if webhook is None:
            raise WebhookNotFound("No such webhook.")
        return webhook

    async def update(
        self,
        actor: WebhookActor,
        org_id: uuid.UUID,
        webhook_id: uuid.UUID,
        patch: WebhookUpdate,
        if_match: str | None,
    ) -> Webhook:
        """Apply a partial change; a change that changes nothing writes nothing."""
        webhook = await self._locked(actor, org_id, webhook_id, if_match)
        changed: list[str] = []
        if patch.url is not None and patch.url != webhook.url:
            self.egress.check_url(patch.url)
            webhook.url = patch.url
            changed.append("url")
        if patch.events is not None and [str(e) for e in patch.events] != webhook.events:
            webhook.events = [str(e) for e in patch.events]
            changed.append("events")
        for field in ("description", "include_content", "enabled"):
            value = getattr(patch, field)
            if value is not None and value != getattr(webhook, field):
                setattr(webhook, field, value)
                changed.append(field)
        if not changed:
            return webhook
        if "enabled" in changed and webhook.enabled:
            webhook.disabled_reason = None
            webhook.consecutive_failures = 0
        webhook.version += 1
        webhook.updated_at = datetime.now(UTC)
        await self.repository.add(webhook)
        await self._record(
            AuditAction.WEBHOOK_UPDATED, actor, webhook, {**described(webhook), "changed": changed}
        )
        return webhook

    async def delete(
        self, actor: WebhookActor, org_id: uuid.UUID, webhook_id: uuid.UUID, if_match: str | None
    ) -> None:
        webhook = await self._locked(actor, org_id, webhook_id, if_match)
        await self.repository.delete(webhook)
        await self._record(AuditAction.WEBHOOK_DELETED, actor, webhook, {"url": webhook.url})

    async def rotate_secret(
        self, actor: WebhookActor, org_id: uuid.UUID, webhook_id: uuid.UUID, body: WebhookRotate
    ) -> tuple[Webhook, str]:
        """A new secret; the current one stays valid (both sign) for the overlap."""
        webhook = await self._locked(actor, org_id, webhook_id, None)
        overlap = body.overlap_seconds
        if overlap is None:
            overlap = self.settings.webhook_secret_overlap_seconds
        secret = new_secret()
        now = datetime.now(UTC)
        webhook.previous_secret_ciphertext = webhook.secret_ciphertext if overlap > 0 else None
        webhook.previous_secret_expires_at = now + timedelta(seconds=overlap) if overlap > 0 else None
        webhook.secret_ciphertext = encrypt(self.secretbox, secret)
        webhook.version += 1
        webhook.updated_at = now
        await self.repository.add(webhook)
        await self._record(
            AuditAction.WEBHOOK_SECRET_ROTATED,
            actor,
            webhook,
            {"url": webhook.url, "overlap_seconds": overlap},
        )
        return webhook, secret

    async def deliveries(
        self, actor: WebhookActor, org_id: uuid.UUID, webhook_id: uuid.UUID, limit: int, cursor: str | None
    ) -> tuple[list[WebhookDelivery], str | None]:
        webhook = await self.get(actor, org_id, webhook_id)
        return await self.repository.deliveries_page(webhook.org_id, webhook.id, limit, cursor)

    async def redeliver(
        self, actor: WebhookActor, org_id: uuid.UUID, webhook_id: uuid.UUID, delivery_id: uuid.UUID
    ) -> WebhookDelivery:
        """Queue the delivery's event again: same body, same `webhook-id`, a new log entry."""
        webhook = await self.get(actor, org_id, webhook_id)
        earlier = await self.repository.delivery_in_org(webhook.org_id, webhook.id, delivery_id)
        if earlier is None:
            raise DeliveryNotFound("No such delivery.")
        delivery = new_delivery(
            webhook.org_id,
            webhook.id,
            earlier.message_id,
            earlier.payload,
            datetime.now(UTC),
            redelivery_of=earlier.id,
        )
        await self.repository.add(delivery)
        await jobs.defer_in(self.session, [delivery.id])
        return delivery

    async def ping(self, actor: WebhookActor, org_id: uuid.UUID, webhook_id: uuid.UUID) -> WebhookDelivery:
        """Queue a `webhook.ping` event to this webhook (sent even while it is disabled)."""
        webhook = await self.get(actor, org_id, webhook_id)
        now = datetime.now(UTC)
        payload = envelope(PING, now, {"webhook_id": str(webhook.id)})
        delivery = new_delivery(webhook.org_id, webhook.id, message_id(uuid.uuid4().hex), payload, now)
        await self.repository.add(delivery)
        await jobs.defer_in(self.session, [delivery.id])
        return delivery

    async def _locked(
        self, actor: WebhookActor, org_id: uuid.UUID, webhook_id: uuid.UUID, if_match: str | None
    ) -> Webhook:
        webhook = await self.repository.get_in_org(current_org(actor, org_id), webhook_id, for_update=True)
        if webhook is None:
            raise WebhookNotFound("No such webhook.")
        if if_match is not None and not precondition_holds(if_match, webhook.version):
            raise WebhookVersionMismatch(
                f"If-Match does not name the current version ({entity_tag(webhook.version)}); "
                "read the webhook again and retry.",
                headers={"ETag": entity_tag(webhook.version)},
                extra={"current_version": webhook.version},
            )
        return webhook

    async def _record(
        self, action: AuditAction, actor: WebhookActor, webhook: Webhook, details: dict[str, Any]
    ) -> None:
        if actor.api_key_id is not None:
            details = {**details, "key_id": str(actor.api_key_id)}
        await self.audit.record(
            action,
            user_id=actor.user_id,
            org_id=webhook.org_id,
            actor_type=ActorType.API_KEY if actor.api_key_id is not None else ActorType.USER,
            resource_type="webhook",
            resource_id=webhook.id,
            details=details,
        )


def current_org(actor: WebhookActor, org_id: uuid.UUID) -> uuid.UUID:
    """Only the caller's current organization exists here: any other id answers 404."""
    if actor.org_id is None or org_id != actor.org_id:
        raise OrgNotFound("No such organization.")
    return org_id


def described(webhook: Webhook) -> dict[str, Any]:
    """What the audit trail keeps of a webhook: everything but its secrets."""
    return {
        "url": webhook.url,
        "events": list(webhook.events),
        "include_content": webhook.include_content,
        "enabled": webhook.enabled,
        "version": webhook.version,
    }
