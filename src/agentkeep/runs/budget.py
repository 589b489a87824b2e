"""Monthly token budgets: what an organization may still spend this calendar month (UTC).

Usage is the sum of input and output tokens of the organization's runs created in the
month. The budget is the organization's own (`organizations.monthly_token_budget`) or, when
it has none, the deployment default `ORG_MONTHLY_TOKEN_BUDGET`; neither set: unlimited.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from agentkeep.orgs.models import Organization
from agentkeep.runs.models import Run


class Unread(enum.Enum):
    """The organization's own budget has not been read (None means it has none)."""

    UNREAD = "unread"


UNREAD = Unread.UNREAD


def month_start(now: datetime) -> datetime:
    now = now.astimezone(UTC)
    return datetime(now.year, now.month, 1, tzinfo=UTC)


def next_month_start(now: datetime) -> datetime:
    start = month_start(now)
    return (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )


def month_end(now: datetime) -> datetime | None:
    """Where the month of `now` ends (exclusive); None for 9999-12, the last month a datetime
    can hold, whose end is past every instant."""
    start = month_start(now)
    return None if (start.year, start.month) == (datetime.max.year, 12) else next_month_start(start)


def created_in_month(now: datetime) -> ColumnElement[bool]:
    """Runs created in the calendar month (UTC) of `now`."""
    end = month_end(now)
    after_start = Run.created_at >= month_start(now)
    return after_start if end is None else and_(after_start, Run.created_at < end)


async def tokens_used_this_month(session: AsyncSession, org_id: uuid.UUID, now: datetime) -> int:
    total = await session.scalar(
        select(func.coalesce(func.sum(Run.input_tokens + Run.output_tokens), 0)).where(
            Run.org_id == org_id, created_in_month(now)
        )
    )
    return int(total or 0)


def effective_budget(own: int | None, default: int | None) -> int | None:
    """The organization's own budget, or the deployment default when it has none."""
    return own if own is not None else default


async def monthly_budget(session: AsyncSession, org_id: uuid.UUID, default: int | None) -> int | None:
    own = await session.scalar(select(Organization.monthly_token_budget).where(Organization.id == org_id))
    return effective_budget(own, default)


async def remaining_tokens(
    session: AsyncSession,
    org_id: uuid.UUID,
    default_budget: int | None,
    now: datetime | None = None,
    *,
    own_budget: int | Unread | None = UNREAD,
) -> int | None:
    """Tokens left this month (never negative); None when the budget is unlimited.
    `own_budget`: the organization's own budget when the caller has read it already."""
    now = now or datetime.now(UTC)
    if isinstance(own_budget, Unread):
        budget = await monthly_budget(session, org_id, default_budget)
    else:
        budget = effective_budget(own_budget, default_budget)
    if budget is None:
        return None
    return max(0, budget - await tokens_used_this_month(session, org_id, now))
