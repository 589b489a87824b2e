"""Migration 0004 gives every existing account its personal organization."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from agentkeep.db.base import UTCDateTime
from agentkeep.db.migrate import upgrade

USERS = sa.table(
    "users",
    sa.column("id", sa.Uuid()),
    sa.column("username", sa.String()),
    sa.column("email", sa.String()),
    sa.column("password_hash", sa.String()),
    sa.column("created_at", UTCDateTime()),
    sa.column("updated_at", UTCDateTime()),
)


async def test_existing_users_become_owners_of_a_personal_organization(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    await asyncio.to_thread(upgrade, url, "0003_audit")
    engine = create_async_engine(url, poolclass=NullPool)
    user_id, now = uuid.uuid4(), datetime.now(UTC)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                USERS.insert().values(
                    id=user_id,
                    username="old",
                    email="old@example.com",
                    password_hash="x",
                    created_at=now,
                    updated_at=now,
                )
            )
        await asyncio.to_thread(upgrade, url)
        async with engine.connect() as connection:
            rows = (
                await connection.execute(
                    sa.text(
                        "SELECT o.slug, o.is_personal, m.role FROM organizations o "
                        "JOIN memberships m ON m.org_id = o.id"
                    )
                )
            ).all()
    finally:
        await engine.dispose()
    assert [tuple(row) for row in rows] == [("~old", 1, "owner")]
