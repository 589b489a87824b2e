"""Seeding threads straight into the database, as if the given user had started them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from fastapi import FastAPI

from agentkeep.threads.models import Thread


async def seed_thread(
    app: FastAPI,
    org_id: str,
    agent_id: str,
    user_id: str,
    *,
    api_key_id: str | None = None,
    active_ago: timedelta = timedelta(0),
) -> str:
    """A thread `user_id` (through `api_key_id`, if given) started, last active `active_ago`."""
    thread_id = uuid.uuid4()
    moment = datetime.now(UTC) - active_ago
    async with app.state.sessionmaker() as session, session.begin():
        session.add(
            Thread(
                id=thread_id,
                org_id=uuid.UUID(org_id),
                agent_id=uuid.UUID(agent_id),
                created_by_user_id=uuid.UUID(user_id),
                created_by_api_key_id=uuid.UUID(api_key_id) if api_key_id else None,
                title="",
                metadata_={},
                created_at=moment,
                updated_at=moment,
                last_activity_at=moment,
            )
        )
    return str(thread_id)
