"""The outbox: events become delivery rows in the transaction of the state change itself.

`record` is the one call domains make when something a webhook may subscribe to happens (a run
finished, a thread was created, an agent changed). It writes one pending delivery per enabled
webhook of the organization that subscribes to the event, and (on PostgreSQL) each one's
job, in the caller's transaction: if the state change commits, the event will be delivered
at least once, whatever process dies afterwards; if it rolls back, no event exists. It sends
nothing and never waits on a receiver.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from agentkeep.webhooks import jobs
from agentkeep.webhooks.events import envelope, for_webhook
from agentkeep.webhooks.models import Webhook, WebhookDelivery
from agentkeep.webhooks.signing import message_id

PENDING = "pending"


async def record(session: AsyncSession, *, org_id: uuid.UUID, type: str, data: dict[str, Any]) -> int:
    """Queue the event `type` for the organization's webhooks; how many deliveries were queued."""
    statement = select(Webhook.id, Webhook.events, Webhook.include_content).where(
        Webhook.org_id == org_id, Webhook.enabled.is_(True)
    )
    targets = [(row[0], row[2]) for row in (await session.execute(statement)).all() if type in row[1]]
    if not targets:
        return 0
    now = datetime.now(UTC)
    msg_id = message_id(uuid.uuid4().hex)
    deliveries = [
        new_delivery(org_id, webhook_id, msg_id, envelope(type, now, for_webhook(data, include)), now)
        for webhook_id, include in targets
    ]
    session.add_all(deliveries)
    await session.flush()
    await jobs.defer_in(session, [d.id for d in deliveries])
    return len(deliveries)


def new_delivery(
    org_id: uuid.UUID,
    webhook_id: uuid.UUID,
    msg_id: str,
    payload: dict[str, Any],
    now: datetime,
    redelivery_of: uuid.UUID | None = None,
) -> WebhookDelivery:
    return WebhookDelivery(
        id=uuid.uuid4(),
        org_id=org_id,
        webhook_id=webhook_id,
        message_id=msg_id,
        event_type=str(payload["type"]),
        payload=payload,
        status=PENDING,
        attempts=0,
        next_attempt_at=now,
        redelivery_of=redelivery_of,
        created_at=now,
        updated_at=now,
    )
