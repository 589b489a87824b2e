"""Sending a delivery: claim it, sign and POST it, record the answer, schedule what follows.

One attempt per call (`WebhookSender.attempt`): the delivery is claimed with a conditional
UPDATE (pending, due, not held by a live attempt), held for the request timeout plus a margin,
and the outcome is written in one transaction with whatever follows: the retry (on
PostgreSQL its job, scheduled at the retry time), or the final failure, the webhook's failure
count and, at WEBHOOK_DISABLE_AFTER_FAILURES, its disabling (audited). A 2xx answer is a
success; anything else, a refused address, a timeout or a redirect is a failed attempt.
"""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import httpx2
import structlog
from sqlalchemy import CursorResult, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agentkeep.audit.actions import ActorType, AuditAction
from agentkeep.audit.service import record as audit_record
from agentkeep.config import Settings
from agentkeep.context import RequestContext
from agentkeep.observability.metrics import Metrics
from agentkeep.security.secretbox import SecretBox
from agentkeep.tools.guarded_transport import EgressRefused
from agentkeep.webhooks import jobs
from agentkeep.webhooks.egress import WebhookEgress
from agentkeep.webhooks.events import PING
from agentkeep.webhooks.keys import SecretUnreadable, signing_secrets
from agentkeep.webhooks.models import DELIVERY_ERROR_MAX, RESPONSE_BODY_MAX, Webhook, WebhookDelivery
from agentkeep.webhooks.signing import body_of, signed_headers

logger = structlog.get_logger("agentkeep.webhooks")

# A claimed delivery is held this much longer than the request timeout: a sender that died
# mid-attempt lets it lapse, and the sweep sends it again.
HOLD_MARGIN_SECONDS = 5.0
DISABLED_BY_FAILURES = "consecutive_failures"


@dataclass(frozen=True, slots=True)
class Answer:
    status: int | None = None
    body: str | None = None
    error: str | None = None
    latency_ms: int | None = None

    @property
    def succeeded(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class WebhookSender:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        secretbox: SecretBox | None,
        metrics: Metrics | None = None,
        egress: WebhookEgress | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.secretbox = secretbox
        self.metrics = metrics
        self.egress = egress or WebhookEgress.from_settings(settings)
        self._client: httpx2.AsyncClient | None = None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def attempt(self, delivery_id: uuid.UUID) -> str | None:
        """One attempt; the outcome (succeeded, retrying, failed), or None when the delivery was
        not due, is held by another attempt, or is gone."""
        claimed = await self._claim(delivery_id)
        if claimed is None:
            return None
        delivery, webhook, lag = claimed
        if self.metrics is not None:
            self.metrics.webhook_delivery_lag.observe(max(0.0, lag))
        now = datetime.now(UTC)
        if not webhook.enabled and delivery.event_type != PING:
            answer = Answer(error="the webhook is disabled")
            return await self._settle(delivery.id, webhook.id, answer, final=True)
        try:
            secrets_ = signing_secrets(self.secretbox, webhook, now)
        except SecretUnreadable as exc:
            answer = Answer(error=f"not sent: {exc}")
        else:
            answer = await self._post(webhook.url, delivery, secrets_, now)
        return await self._settle(delivery.id, webhook.id, answer, final=False, attempts=delivery.attempts)

    async def _claim(self, delivery_id: uuid.UUID) -> tuple[WebhookDelivery, Webhook, float] | None:
        now = datetime.now(UTC)
        hold = timedelta(seconds=self.settings.webhook_timeout_seconds + HOLD_MARGIN_SECONDS)
        async with self.sessionmaker() as session, session.begin():
            claimed = await session.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.id == delivery_id,
                    WebhookDelivery.status == "pending",
                    WebhookDelivery.next_attempt_at <= now + timedelta(seconds=1),
                    (WebhookDelivery.locked_until.is_(None)) | (WebhookDelivery.locked_until < now),
                )
                .values(
                    locked_until=now + hold,
                    attempts=WebhookDelivery.attempts + 1,
                    last_attempt_at=now,
                    updated_at=now,
                )
            )
            if int(cast(CursorResult[Any], claimed).rowcount) != 1:
                return None
            row = (
                await session.execute(
                    select(WebhookDelivery, Webhook)
                    .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
                    .where(WebhookDelivery.id == delivery_id)
                )
            ).first()
            if row is None:
                return None
            delivery, webhook = row
            due = delivery.next_attempt_at or now
            session.expunge_all()
        return delivery, webhook, (now - due).total_seconds()

    def _client_of(self) -> httpx2.AsyncClient:
        if self._client is None:
            self._client = self.egress.client()
        return self._client

    async def _post(self, url: str, delivery: WebhookDelivery, secrets_: list[str], now: datetime) -> Answer:
        body = body_of(delivery.payload)
        headers = signed_headers(secrets_, delivery.message_id, now, body)
        headers["user-agent"] = "AgentKeep-Webhooks/1"
        started = time.monotonic()
        try:
            async with self._client_of().stream("POST", url, content=body, headers=headers) as response:
                received = bytearray()
                async for chunk in response.aiter_bytes():
                    received.extend(chunk)
                    if len(received) >= RESPONSE_BODY_MAX:
                        break
                latency = int((time.monotonic() - started) * 1000)
                text = bytes(received[:RESPONSE_BODY_MAX]).decode("utf-8", errors="replace")
                error = None
                if response.is_redirect:
                    error = "redirects are not followed"
                return Answer(status=response.status_code, body=text, error=error, latency_ms=latency)
        except EgressRefused as exc:
            return Answer(error=f"refused by the network guard: {exc}"[:DELIVERY_ERROR_MAX])
        except httpx2.TimeoutException:
            return Answer(error="timed out", latency_ms=int((time.monotonic() - started) * 1000))
        except httpx2.HTTPError as exc:
            return Answer(error=f"{type(exc).__name__}: {exc}"[:DELIVERY_ERROR_MAX])

    def _retry_pause(self, attempts: int) -> float | None:
        pauses = self.settings.webhook_retry_pauses
        if attempts > len(pauses):
            return None
        jitter = self.settings.webhook_retry_jitter
        return pauses[attempts - 1] * (1 + random.uniform(-jitter, jitter))  # noqa: S311 (not crypto)

    async def _settle(
        self,
        delivery_id: uuid.UUID,
        webhook_id: uuid.UUID,
        answer: Answer,
        *,
        final: bool,
        attempts: int = 0,
    ) -> str:
        now = datetime.now(UTC)
        values: dict[str, Any] = {
            "locked_until": None,
            "response_status": answer.status,
            "response_body": answer.body,
            "latency_ms": answer.latency_ms,
            "error": answer.error,
            "updated_at": now,
        }
        pause = None if final or answer.succeeded else self._retry_pause(attempts)
        if answer.succeeded:
            outcome = "succeeded"
            values.update(status="succeeded", next_attempt_at=None)
        elif pause is not None:
            outcome = "retrying"
            values.update(next_attempt_at=now + timedelta(seconds=pause))
        else:
            outcome = "failed"
            values.update(status="failed", next_attempt_at=None)
        async with self.sessionmaker() as session, session.begin():
            await session.execute(
                update(WebhookDelivery).where(WebhookDelivery.id == delivery_id).values(**values)
            )
            if outcome == "retrying":
                await jobs.defer_in(session, [delivery_id], scheduled_at=values["next_attempt_at"])
            elif answer.succeeded:
                await session.execute(
                    update(Webhook)
                    .where(Webhook.id == webhook_id, Webhook.consecutive_failures != 0)
                    .values(consecutive_failures=0, updated_at=Webhook.updated_at)
                )
            elif not final:
                await self._count_failure(session, webhook_id, now)
        if self.metrics is not None:
            self.metrics.webhook_deliveries.labels(outcome).inc()
        logger.info(
            "webhook_attempt",
            delivery_id=str(delivery_id),
            outcome=outcome,
            status=answer.status,
            error=answer.error,
        )
        return outcome

    async def _count_failure(self, session: AsyncSession, webhook_id: uuid.UUID, now: datetime) -> None:
        counted = (
            await session.execute(
                update(Webhook)
                .where(Webhook.id == webhook_id)
                .values(consecutive_failures=Webhook.consecutive_failures + 1, updated_at=Webhook.updated_at)
                .returning(Webhook.consecutive_failures, Webhook.enabled)
            )
        ).first()
        limit = self.settings.webhook_disable_after_failures
        if counted is None or not counted[1] or limit == 0 or counted[0] < limit:
            return
        webhook = (await session.scalars(select(Webhook).where(Webhook.id == webhook_id))).one()
        webhook.enabled = False
        webhook.disabled_reason = DISABLED_BY_FAILURES
        webhook.version += 1
        webhook.updated_at = now
        await audit_record(
            session,
            AuditAction.WEBHOOK_DISABLED,
            context=RequestContext.system(),
            org_id=webhook.org_id,
            actor_type=ActorType.SYSTEM,
            resource_type="webhook",
            resource_id=webhook.id,
            details={"url": webhook.url, "reason": DISABLED_BY_FAILURES, "failures": counted[0]},
        )
        if self.metrics is not None:
            self.metrics.webhooks_disabled.inc()
        logger.warning("webhook_disabled", webhook_id=str(webhook.id), failures=counted[0])
