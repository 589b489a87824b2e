"""Run and run-event queries. Run queries are scoped to an organization; event queries take
a run id the caller has already authorized (or owns, for the runner writing them).

Events are append-only and numbered per run from 1. While a run is queued, the API writes
its events (creation, cancellation); while it runs, only its runner does: so `seq = max+1`
has one writer at a time, and the (run_id, seq) primary key refuses a second one.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    Executable,
    Integer,
    String,
    Table,
    bindparam,
    column,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.selectable import TableValuedAlias

from agentkeep.agents.models import Agent
from agentkeep.db.base import utcnow
from agentkeep.notify import topics
from agentkeep.notify.announce import announce
from agentkeep.pagination import keyset_rows
from agentkeep.runs.budget import created_in_month
from agentkeep.runs.models import Run, RunEvent
from agentkeep.runs.schemas import READ_COLUMNS
from agentkeep.runs.states import EventKind, RunStatus, StopReason
from agentkeep.threads.repository import Viewer, visible_thread_ids

EVENT_BATCH = 500


@dataclass(frozen=True, slots=True)
class RunFilters:
    agent_id: uuid.UUID | None = None
    status: RunStatus | None = None
    thread_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class AgentUsage:
    agent_id: uuid.UUID
    agent_name: str
    runs: int
    requests: int
    input_tokens: int
    output_tokens: int


def _rowcount(result: Any) -> int:
    return int(cast(CursorResult[Any], result).rowcount)


def erased_turns_seen_by(viewer: Viewer) -> ColumnElement[bool]:
    """Turns whose thread was deleted (kept for accounting, content erased) stay as private as
    the thread was: deleting never widens who sees a run. Their thread is gone, so who
    started each turn stands in for who started the thread: the user (through a session or
    any of their keys), the key itself; `read_all` sees them all."""
    erased = Run.thread_id.is_(None) & Run.thread_turn.is_not(None)
    if viewer.read_all:
        return erased
    if viewer.api_key_id is not None:
        return erased & (Run.api_key_id == viewer.api_key_id)
    return erased & (Run.created_by == viewer.user_id)


def visible_to(viewer: Viewer) -> ColumnElement[bool]:
    """The organization's runs `viewer` may see: single-shot runs, turns of its threads, and
    the erased turns of deleted threads that it may see (`erased_turns_seen_by`)."""
    single_shot = Run.thread_id.is_(None) & Run.thread_turn.is_(None)
    return (Run.org_id == viewer.org_id) & or_(
        single_shot, Run.thread_id.in_(visible_thread_ids(viewer)), erased_turns_seen_by(viewer)
    )


class RunRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_visible(self, viewer: Viewer, run_id: uuid.UUID) -> Run | None:
        statement = select(Run).where(visible_to(viewer), Run.id == run_id)
        return (await self.session.scalars(statement)).first()

    async def add(self, run: Run) -> None:
        self.session.add(run)
        await self.session.flush()

    async def reload(self, run: Run) -> Run:
        """The row as committed or updated by set-based statements since it was loaded."""
        await self.session.refresh(run)
        return run

    async def page_visible(
        self, viewer: Viewer, filters: RunFilters, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """RunRead rows (READ_COLUMNS), newest first, keyed on (created_at, id)."""
        statement = select(*READ_COLUMNS).where(visible_to(viewer))
        if filters.thread_id is not None:
            statement = statement.where(Run.thread_id == filters.thread_id)
        if filters.agent_id is not None:
            statement = statement.where(Run.agent_id == filters.agent_id)
        if filters.status is not None:
            statement = statement.where(Run.status == filters.status.value)
        return await keyset_rows(self.session, statement, Run.created_at, Run.id, limit=limit, cursor=cursor)

    async def cancel_if(self, status: RunStatus, org_id: uuid.UUID, run_id: uuid.UUID, now: datetime) -> bool:
        """Cancel a run no runner holds (`queued`, or `requires_action`: waiting for approval);
        False if it is no longer in `status`."""
        result = await self.session.execute(
            update(Run)
            .where(Run.org_id == org_id, Run.id == run_id, Run.status == status.value)
            .values(
                status=RunStatus.CANCELLED.value,
                stop_reason=StopReason.CANCELLED.value,
                cancel_requested_at=now,
                finished_at=now,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        return _rowcount(result) == 1

    async def request_cancel_if_running(self, org_id: uuid.UUID, run_id: uuid.UUID, now: datetime) -> bool:
        """Ask the runner of a running run to stop; False if not running or already asked."""
        result = await self.session.execute(
            update(Run)
            .where(
                Run.org_id == org_id,
                Run.id == run_id,
                Run.status == RunStatus.RUNNING.value,
                Run.cancel_requested_at.is_(None),
            )
            .values(cancel_requested_at=now, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        return _rowcount(result) == 1

    async def usage_by_agent(self, org_id: uuid.UUID, month: datetime) -> list[AgentUsage]:
        """Runs and usage per agent for runs created in the month (UTC) of `month`, archived
        agents included."""
        statement = (
            select(
                Run.agent_id,
                Agent.name,
                func.count(Run.id),
                func.coalesce(func.sum(Run.requests), 0),
                func.coalesce(func.sum(Run.input_tokens), 0),
                func.coalesce(func.sum(Run.output_tokens), 0),
            )
            .join(Agent, Agent.id == Run.agent_id)
            .where(Run.org_id == org_id, created_in_month(month))
            .group_by(Run.agent_id, Agent.name)
            .order_by(Agent.name, Run.agent_id)
        )
        rows = (await self.session.execute(statement)).all()
        return [
            AgentUsage(
                agent_id=row[0],
                agent_name=row[1],
                runs=int(row[2]),
                requests=int(row[3]),
                input_tokens=int(row[4]),
                output_tokens=int(row[5]),
            )
            for row in rows
        ]


async def last_event_seq(session: AsyncSession, run_id: uuid.UUID) -> int:
    """The highest event number of a run (0 before its first event)."""
    value = await session.scalar(
        select(func.coalesce(func.max(RunEvent.seq), 0)).where(RunEvent.run_id == run_id)
    )
    return int(value or 0)


async def append_event(
    session: AsyncSession,
    run_id: uuid.UUID,
    kind: EventKind,
    data: Mapping[str, Any],
    *,
    seq: int | None = None,
    now: datetime | None = None,
) -> RunEvent:
    """Append an event in the caller's transaction and flush: number `seq` when the writer
    keeps count (a runner emitting step after step), else the run's last + 1.

    Only the run's current writer may call it (see the module docstring); the caller commits.
    """
    if seq is None:
        seq = await last_event_seq(session, run_id) + 1
    event = RunEvent(run_id=run_id, seq=seq, kind=kind.value, data=dict(data))
    if now is not None:
        event.created_at = now
    session.add(event)
    await session.flush()
    announce(session, topics.run_events(run_id))  # streams of the run read again
    return event


def event_batch() -> TableValuedAlias:
    """A batch of events as rows `(seq, kind, data)` unnested from three arrays (PostgreSQL),
    bound by `batch_parameters`.

    The statement's text is the same whatever the batch's size or content, so SQLAlchemy
    compiles it once per process; inline VALUES rows made every batch a statement of its own
    to compile, a sixth of a worker's CPU.
    """
    return (
        func.unnest(
            bindparam("event_seqs", type_=ARRAY(Integer)),
            bindparam("event_kinds", type_=ARRAY(String)),
            bindparam("event_datas", type_=ARRAY(JSONB)),
        )
        .table_valued(column("seq", Integer), column("kind", String), column("data", JSONB))
        .render_derived("batch")
    )


def created_at_param() -> BindParameter[datetime]:
    """The batch's creation time (`batch_parameters`)."""
    return bindparam("event_created_at", type_=RunEvent.__table__.c.created_at.type)


def batch_parameters(
    events: list[tuple[EventKind, dict[str, Any]]], first_seq: int, now: datetime
) -> dict[str, Any]:
    """The values of `event_batch` and `created_at_param`: `events` numbered from `first_seq`."""
    return {
        "event_seqs": [first_seq + offset for offset in range(len(events))],
        "event_kinds": [kind.value for kind, _ in events],
        "event_datas": [data for _, data in events],
        "event_created_at": now,
    }


def events_table() -> Table:
    """`run_events` as a table, for Core statements: an ORM INSERT given parameters is a
    bulk insert of them."""
    table = RunEvent.__table__
    assert isinstance(table, Table)
    return table


@functools.cache
def _batch_insert() -> Executable:
    """The INSERT of a batch for one run (`event_run_id`), built once per process: a
    statement built per call costs SQLAlchemy a new cache key each time."""
    batch = event_batch()
    run = bindparam("event_run_id", type_=RunEvent.__table__.c.run_id.type)
    return insert(events_table()).from_select(
        ["run_id", "seq", "kind", "data", "created_at"],
        select(run, batch.c.seq, batch.c.kind, batch.c.data, created_at_param()),
    )


async def append_events(
    session: AsyncSession,
    run_id: uuid.UUID,
    events: list[tuple[EventKind, dict[str, Any]]],
    first_seq: int,
) -> None:
    """Append a batch numbered from `first_seq`, in one statement; the current writer only
    (see `append_event`), which keeps count."""
    if not events:
        return
    now = utcnow()
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(
            _batch_insert(), {**batch_parameters(events, first_seq, now), "event_run_id": run_id}
        )
    else:
        # SQLite: one executemany of one cached INSERT (in-process, no round trips to save).
        rows = [
            {"run_id": run_id, "seq": first_seq + offset, "kind": kind.value, "data": data, "created_at": now}
            for offset, (kind, data) in enumerate(events)
        ]
        await session.execute(insert(RunEvent), rows)
    announce(session, topics.run_events(run_id))


async def events_after(
    session: AsyncSession, org_id: uuid.UUID, run_id: uuid.UUID, after: int, limit: int = EVENT_BATCH
) -> list[RunEvent]:
    """Up to `limit` events of the organization's run with seq > `after`, in order."""
    statement = (
        select(RunEvent)
        .join(Run, Run.id == RunEvent.run_id)
        .where(Run.org_id == org_id, RunEvent.run_id == run_id, RunEvent.seq > after)
        .order_by(RunEvent.seq)
        .limit(limit)
    )
    return list((await session.scalars(statement)).all())


async def run_status(session: AsyncSession, org_id: uuid.UUID, run_id: uuid.UUID) -> RunStatus | None:
    """The run's current status, or None if the organization has no such run."""
    value = await session.scalar(select(Run.status).where(Run.org_id == org_id, Run.id == run_id))
    return RunStatus(value) if value is not None else None


async def next_turn(session: AsyncSession, thread_id: uuid.UUID) -> uuid.UUID | None:
    """The thread's oldest queued turn, if any: the one to dispatch when a turn finishes."""
    statement = (
        select(Run.id)
        .where(Run.thread_id == thread_id, Run.status == RunStatus.QUEUED, Run.cancel_requested_at.is_(None))
        .order_by(Run.thread_turn)
        .limit(1)
    )
    value: uuid.UUID | None = await session.scalar(statement)
    return value


async def next_turn_after(session: AsyncSession, run_id: uuid.UUID) -> uuid.UUID | None:
    """The next queued turn of the thread `run_id` belongs to (None for a single-shot run)."""
    thread_id = await session.scalar(select(Run.thread_id).where(Run.id == run_id))
    return await next_turn(session, thread_id) if thread_id is not None else None
