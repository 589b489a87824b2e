"""Delivery jobs on procrastinate (PostgreSQL): one job per attempt of a delivery.

A job is written in the transaction that makes its delivery due (the outbox row's, or the
failed attempt's that schedules the retry at `scheduled_at`), through procrastinate's own
defer function, so a delivery and its job commit together or not at all. The queueing lock
`webhook:<delivery id>` keeps at most one waiting job per delivery. On SQLite there is no
job queue: the in-process sender polls for due deliveries (`sender.DeliverySweep`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import DateTime, Integer, String, Text, bindparam, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

TASK_NAME = "agentkeep.deliver_webhook"
QUEUE_NAME = "webhooks"
# procrastinate's default priority (not imported: SQLite deployments never load procrastinate).
DEFAULT_PRIORITY = 0

_DEFER = text(
    "SELECT procrastinate_defer_jobs_v1(ARRAY[ROW(:queue_name, :task_name, :priority, NULL, "
    ":queueing_lock, :args, :scheduled_at)]::procrastinate_job_to_defer_v1[])"
).bindparams(
    bindparam("queue_name", type_=String),
    bindparam("task_name", type_=String),
    bindparam("priority", type_=Integer),
    bindparam("queueing_lock", type_=Text),
    bindparam("args", type_=JSONB),
    bindparam("scheduled_at", type_=DateTime(timezone=True)),
)
# Jobs waiting for the delivery: the sweep sends a delivery again only when it has none.
_WAITING = text(
    "SELECT 1 FROM procrastinate_jobs WHERE queueing_lock = :queueing_lock AND status = 'todo' LIMIT 1"
)


def queueing_lock(delivery_id: uuid.UUID) -> str:
    return f"webhook:{delivery_id}"


def uses_job_queue(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


async def defer_in(
    session: AsyncSession, delivery_ids: Iterable[uuid.UUID], scheduled_at: datetime | None = None
) -> None:
    """Write the deliveries' jobs in `session`'s transaction (nothing on SQLite)."""
    if not uses_job_queue(session):
        return
    for delivery_id in delivery_ids:
        if scheduled_at is None and await has_waiting_job(session, delivery_id):
            continue
        await session.execute(
            _DEFER,
            {
                "queue_name": QUEUE_NAME,
                "task_name": TASK_NAME,
                "priority": DEFAULT_PRIORITY,
                "queueing_lock": queueing_lock(delivery_id),
                "args": {"delivery_id": str(delivery_id)},
                "scheduled_at": scheduled_at,
            },
        )


async def has_waiting_job(session: AsyncSession, delivery_id: uuid.UUID) -> bool:
    found = await session.execute(_WAITING, {"queueing_lock": queueing_lock(delivery_id)})
    return found.first() is not None
