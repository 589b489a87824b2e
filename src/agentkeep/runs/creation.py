"""The statements that create a run: few, and none that builds an object only to flush it.

A creation reads the agent with what its organization may still spend (one SELECT, see
`load_target`), then writes the run and its first event with one Core INSERT each: a new
run's first event is number 1, and no stream can wait on a run that does not exist yet, so
neither a `max(seq)` query nor a notification is needed.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    DateTime,
    Select,
    Table,
    Uuid,
    bindparam,
    case,
    func,
    insert,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession

from agentkeep.agents.models import Agent
from agentkeep.orgs.models import Organization
from agentkeep.runs.budget import month_end, month_start
from agentkeep.runs.models import Run, RunEvent
from agentkeep.runs.states import EventKind, RunStatus


@dataclass(frozen=True, slots=True)
class RunTarget:
    """The live agent a run is created on, and the organization's tokens left this month."""

    id: uuid.UUID
    status: str
    version: int
    tokens_left: int | None  # None: no budget applies


@functools.cache
def _target_statement(*, has_default: bool, bounded: bool) -> Select[tuple[Any, ...]]:
    """The statement of `load_target`, built once per shape (values are bound parameters)."""
    org_id = bindparam("org_id", type_=Uuid())
    budget: ColumnElement[int | None] = (
        func.coalesce(Organization.monthly_token_budget, bindparam("default_budget", type_=BigInteger()))
        if has_default
        else Organization.monthly_token_budget.expression
    )
    in_month = [Run.org_id == org_id, Run.created_at >= bindparam("month_start", type_=DateTime(True))]
    if bounded:
        in_month.append(Run.created_at < bindparam("month_end", type_=DateTime(True)))
    tokens = func.coalesce(func.sum(Run.input_tokens + Run.output_tokens), 0)
    used = select(tokens).where(*in_month).scalar_subquery()
    return (
        select(Agent.id, Agent.status, Agent.version, budget, case((budget.is_(None), None), else_=used))
        .join(Organization, Organization.id == Agent.org_id)
        .where(
            Agent.org_id == org_id,
            Agent.id == bindparam("agent_id", type_=Uuid()),
            Agent.archived_at.is_(None),
        )
    )


async def load_target(
    session: AsyncSession, org_id: uuid.UUID, agent_id: uuid.UUID, default_budget: int | None, now: datetime
) -> RunTarget | None:
    """The organization's live (not archived) agent and the budget left, in one statement.

    The month's usage (`budget.created_in_month`) is summed only when a budget applies (a
    CASE branch not taken is not evaluated), as `budget.remaining_tokens` would.
    """
    end = month_end(now)
    statement = _target_statement(has_default=default_budget is not None, bounded=end is not None)
    parameters = {
        "org_id": org_id,
        "agent_id": agent_id,
        "default_budget": default_budget,
        "month_start": month_start(now),
        "month_end": end,
    }
    row = (await session.execute(statement, parameters)).first()
    if row is None:
        return None
    agent_id, status, version, limit, spent = row
    tokens_left = None if limit is None else max(0, int(limit) - int(spent or 0))
    return RunTarget(id=agent_id, status=status, version=version, tokens_left=tokens_left)


def _table(model: type[Run] | type[RunEvent]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


# Core inserts built once: an ORM insert with a parameter dict would be a bulk insert.
_INSERT_RUN = insert(_table(Run))
_INSERT_EVENT = insert(_table(RunEvent))


def queued_run(
    run_id: uuid.UUID,
    *,
    org_id: uuid.UUID,
    agent_id: uuid.UUID,
    agent_version: int,
    created_by: uuid.UUID,
    api_key_id: uuid.UUID | None,
    thread_id: uuid.UUID | None,
    thread_turn: int | None,
    input_text: str,
    now: datetime,
    dispatched: bool,
) -> Run:
    """A new queued run, every column it is inserted with set (not added to any session)."""
    return Run(
        id=run_id,
        org_id=org_id,
        agent_id=agent_id,
        agent_version=agent_version,
        created_by=created_by,
        api_key_id=api_key_id,
        thread_id=thread_id,
        thread_turn=thread_turn,
        input=input_text,
        status=RunStatus.QUEUED.value,
        stop_reason=None,
        output=None,
        error=None,
        requests=0,
        input_tokens=0,
        output_tokens=0,
        attempts=0,
        dispatched_at=now if dispatched else None,
        cancel_requested_at=None,
        created_at=now,
        started_at=None,
        finished_at=None,
        updated_at=now,
    )


_INSERTED = (
    "id",
    "org_id",
    "agent_id",
    "agent_version",
    "created_by",
    "api_key_id",
    "thread_id",
    "thread_turn",
    "input",
    "status",
    "requests",
    "input_tokens",
    "output_tokens",
    "attempts",
    "dispatched_at",
    "created_at",
    "updated_at",
)


async def insert_run(session: AsyncSession, run: Run) -> None:
    """Insert a run built by `queued_run` and its first event (`queued`, number 1)."""
    values: dict[str, Any] = {name: getattr(run, name) for name in _INSERTED}
    await session.execute(_INSERT_RUN, values)
    await session.execute(
        _INSERT_EVENT,
        {
            "run_id": run.id,
            "seq": 1,
            "kind": EventKind.STATUS.value,
            "data": {"status": RunStatus.QUEUED.value},
            "created_at": run.created_at,
        },
    )
