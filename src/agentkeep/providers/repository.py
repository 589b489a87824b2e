"""Provider queries, every one scoped to one organization (the re-encryption sweep aside)."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from agentkeep.pagination import keyset_page
from agentkeep.providers.models import Provider

DEFAULT_PROVIDER_NAME = "default"


class ProviderRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, provider: Provider) -> None:
        self.session.add(provider)
        await self.session.flush()

    async def page_in_org(
        self, org_id: uuid.UUID, limit: int, cursor: str | None
    ) -> tuple[list[Provider], str | None]:
        """Newest first, keyed on (created_at, id)."""
        statement = select(Provider).where(Provider.org_id == org_id)
        return await keyset_page(
            self.session, statement, Provider.created_at, Provider.id, limit=limit, cursor=cursor
        )

    async def get_in_org(self, org_id: uuid.UUID, provider_id: uuid.UUID) -> Provider | None:
        statement = select(Provider).where(Provider.org_id == org_id, Provider.id == provider_id)
        return (await self.session.scalars(statement)).first()

    async def name_taken(self, org_id: uuid.UUID, name: str) -> bool:
        statement = select(Provider.id).where(Provider.org_id == org_id, Provider.name == name)
        return (await self.session.execute(statement)).first() is not None

    async def for_runs(self, org_id: uuid.UUID, name: str | None) -> Provider | None:
        """The provider named `name`; without a name, the one named "default", else the
        organization's only provider (None when it has none, or several and no default)."""
        if name is not None:
            statement = select(Provider).where(Provider.org_id == org_id, Provider.name == name)
            return (await self.session.scalars(statement)).first()
        # One query for both rules: "default" sorts first, and a second row tells "only" apart.
        statement = (
            select(Provider)
            .where(Provider.org_id == org_id)
            .order_by((Provider.name == DEFAULT_PROVIDER_NAME).desc())
            .limit(2)
        )
        candidates = list((await self.session.scalars(statement)).all())
        if candidates and candidates[0].name == DEFAULT_PROVIDER_NAME:
            return candidates[0]
        return candidates[0] if len(candidates) == 1 else None

    async def delete(self, provider: Provider) -> None:
        await self.session.delete(provider)
        await self.session.flush()

    async def all_ids(self) -> list[uuid.UUID]:
        """Every provider of every organization (for the re-encryption sweep)."""
        return list((await self.session.scalars(select(Provider.id).order_by(Provider.id))).all())

    async def locked(self, provider_id: uuid.UUID) -> Provider | None:
        statement = select(Provider).where(Provider.id == provider_id).with_for_update()
        return (await self.session.scalars(statement)).first()
