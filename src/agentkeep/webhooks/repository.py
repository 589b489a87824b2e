"""Webhook and delivery queries, every one scoped to one organization (the sweeps aside)."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from agentkeep.pagination import keyset_page
from agentkeep.webhooks.models import Webhook, WebhookDelivery


class WebhookRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, *rows: Webhook | WebhookDelivery) -> None:
        self.session.add_all(rows)
        await self.session.flush()

    async def page_in_org(
        self, org_id: uuid.UUID, limit: int, cursor: str | None
    ) -> tuple[list[Webhook], str | None]:
        statement = select(Webhook).where(Webhook.org_id == org_id)
        return await keyset_page(
            self.session, statement, Webhook.created_at, Webhook.id, limit=limit, cursor=cursor
        )

    async def get_in_org(
        self, org_id: uuid.UUID, webhook_id: uuid.UUID, *, for_update: bool = False
    ) -> Webhook | None:
        statement = select(Webhook).where(Webhook.org_id == org_id, Webhook.id == webhook_id)
        if for_update:
            statement = statement.with_for_update()
        return (await self.session.scalars(statement)).first()

    async def delete(self, webhook: Webhook) -> None:
        await self.session.delete(webhook)
        await self.session.flush()

    async def deliveries_page(
        self, org_id: uuid.UUID, webhook_id: uuid.UUID, limit: int, cursor: str | None
    ) -> tuple[list[WebhookDelivery], str | None]:
        statement = select(WebhookDelivery).where(
            WebhookDelivery.org_id == org_id, WebhookDelivery.webhook_id == webhook_id
        )
        return await keyset_page(
            self.session,
            statement,
            WebhookDelivery.created_at,
            WebhookDelivery.id,
            limit=limit,
            cursor=cursor,
        )

    async def delivery_in_org(
        self, org_id: uuid.UUID, webhook_id: uuid.UUID, delivery_id: uuid.UUID
    ) -> WebhookDelivery | None:
        statement = select(WebhookDelivery).where(
            WebhookDelivery.org_id == org_id,
            WebhookDelivery.webhook_id == webhook_id,
            WebhookDelivery.id == delivery_id,
        )
        return (await self.session.scalars(statement)).first()

    async def all_ids(self) -> list[uuid.UUID]:
        """Every webhook of every organization (for the re-encryption sweep)."""
        return list((await self.session.scalars(select(Webhook.id).order_by(Webhook.id))).all())

    async def locked(self, webhook_id: uuid.UUID) -> Webhook | None:
        statement = select(Webhook).where(Webhook.id == webhook_id).with_for_update()
        return (await self.session.scalars(statement)).first()
