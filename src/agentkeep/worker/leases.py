"""The run row as a lease: claim, renew, finish and hand back, each one conditional UPDATE.

Every write a runner makes while it executes a run starts with an UPDATE of the run row
that matches only while the runner still holds the lease (`fence`). On PostgreSQL that
UPDATE takes the row lock, on SQLite the database write lock, so a claim by another runner
and a write by the previous holder are serialised: whoever comes second sees the other's
result. A runner that lost its lease therefore cannot append an event or record an outcome.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    CursorResult,
    Executable,
    Integer,
    String,
    and_,
    bindparam,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import CTE

from agentkeep.approvals.models import RunApproval
from agentkeep.notify import topics
from agentkeep.notify.announce import CHANNEL, announce, hub_of, notify_in
from agentkeep.orgs.models import Organization
from agentkeep.providers.models import Provider
from agentkeep.runs.contract import RunOutcome, Usage
from agentkeep.runs.models import Run, RunEvent
from agentkeep.runs.repository import (
    append_event,
    append_events,
    batch_parameters,
    created_at_param,
    event_batch,
    events_table,
)
from agentkeep.runs.states import ACTIVE_STATUSES, EventKind, RunStatus, StopReason
from agentkeep.webhooks.models import Webhook


class LeaseLost(Exception):
    """This runner no longer holds the run's lease: another runner (or the sweep) took it."""


@dataclass(frozen=True, slots=True)
class Claim:
    """A run this runner now holds, with what it needs to execute it."""

    run_id: uuid.UUID
    org_id: uuid.UUID
    agent_id: uuid.UUID
    agent_version: int
    input: str
    attempt: int
    # The thread when the run is one of its turns.
    thread_id: uuid.UUID | None
    started_at: datetime
    # The seq the next event of this run gets (events are appended under the lease only).
    next_seq: int
    # Read by the claim's UPDATE for the run's request, so that building it reads them no more:
    # the organization's own monthly token budget (None: the deployment default applies),
    # whether the run paused for approval before (only then is there a pause to resume), and
    # whether the organization has a model provider (only then is one looked up).
    org_budget: int | None = None
    may_resume: bool = True
    has_provider: bool = True


def _rows(result: Any) -> int:
    return int(cast(CursorResult[Any], result).rowcount)


def lease_expired(now: datetime | ColumnElement[datetime]) -> ColumnElement[bool]:
    return and_(Run.status == RunStatus.RUNNING, Run.lease_expires_at < now)


@functools.cache
def turn_is_next() -> ColumnElement[bool]:
    """A single-shot run, or the thread's oldest unfinished turn.

    Turns of one thread run one at a time, in order: a turn is claimable only when every
    earlier turn of its thread has finished. Only the oldest unfinished turn satisfies this,
    and it stays so until it finishes, so two claims racing on one thread cannot both win.
    """
    earlier = aliased(Run)
    unfinished_before = select(earlier.id).where(
        earlier.thread_id == Run.thread_id,
        earlier.thread_turn < Run.thread_turn,
        earlier.status.in_(sorted(ACTIVE_STATUSES)),
    )
    return or_(Run.thread_id.is_(None), ~exists(unfinished_before))


def _claimable(now: datetime | ColumnElement[datetime]) -> ColumnElement[bool]:
    queued = and_(Run.status == RunStatus.QUEUED, Run.cancel_requested_at.is_(None))
    return and_(or_(queued, lease_expired(now)), turn_is_next())


def _held_by(run_id: uuid.UUID, owner: str) -> ColumnElement[bool]:
    return and_(Run.id == run_id, Run.lease_owner == owner, Run.status == RunStatus.RUNNING)


async def claim(
    session: AsyncSession,
    run_id: uuid.UUID,
    owner: str,
    *,
    now: datetime,
    lease_seconds: float,
    max_attempts: int,
) -> Claim | None:
    """Take the run when it is queued or its lease expired, and attempts remain.

    Appends the `running` status event. None when another runner holds it, it is finished,
    cancelled, or out of attempts (see `exhaust`).
    """
    postgres = session.get_bind().dialect.name == "postgresql"
    notifies = _notifies(session)
    params = {
        "claim_run_id": run_id,
        "claim_owner": owner,
        "claim_now": now,
        "claim_expires": now + timedelta(seconds=lease_seconds),
        "claim_max_attempts": max_attempts,
        "claim_topic": topics.run_events(run_id),
        "claim_event_at": now,
    }
    # (No key may be named as a column of `runs`: an UPDATE's parameters name its SET clause.)
    row = (await session.execute(_claim_statement(postgres, notifies), params)).first()
    if row is None:
        return None
    running_seq = int(row.last_seq) + 1
    if not postgres:
        # A Core INSERT (as the attempt's later batches), not an ORM object flushed.
        running: dict[str, Any] = {"status": RunStatus.RUNNING, "attempt": row.attempts}
        await append_events(session, run_id, [(EventKind.STATUS, running)], running_seq)
    if notifies:
        announce(session, topics.run_events(run_id), notified=True)
    return Claim(
        run_id=run_id,
        org_id=row.org_id,
        agent_id=row.agent_id,
        agent_version=row.agent_version,
        input=row.input,
        attempt=row.attempts,
        thread_id=row.thread_id,
        started_at=row.started_at or now,
        next_seq=running_seq + 1,
        org_budget=row.org_budget,
        may_resume=bool(row.may_resume),
        has_provider=bool(row.has_provider),
    )


@functools.cache
def _claim_statement(postgres: bool, notifies: bool) -> Executable:
    """The claim, built once per process: its per-run values are bound parameters (`claim`).
    Built per run, with its WITH clause, it cost more CPU than it took to execute.

    The UPDATE hands back what the attempt needs, the number of the run's last event too:
    one statement where a claim, a read of the row and a max(seq) query were three. And what
    building the run's request would read next (its organization's budget, whether it has a
    provider, whether the run has a pause): three statements fewer per run. With `notifies`
    (PostgreSQL) it also sends the `running` event's notification (at the commit, as
    `announce` would); on PostgreSQL it inserts that event too: the UPDATE in a WITH clause,
    the event inserted once per row it returns, so none when the claim failed.
    """
    run_id = bindparam("claim_run_id", type_=Run.__table__.c.id.type)
    now: ColumnElement[datetime] = bindparam("claim_now", type_=Run.__table__.c.started_at.type)
    last_seq = (
        select(func.coalesce(func.max(RunEvent.seq), 0)).where(RunEvent.run_id == run_id).scalar_subquery()
    )
    org_budget = (
        select(Organization.monthly_token_budget).where(Organization.id == Run.org_id).scalar_subquery()
    )
    may_resume = exists().where(RunApproval.run_id == run_id)
    has_provider = exists().where(Provider.org_id == Run.org_id)
    topic = bindparam("claim_topic", type_=String)
    notified = [notify_in(topic).label("notified")] if notifies else []
    max_attempts = bindparam("claim_max_attempts", type_=Integer)
    claimed = (
        update(Run)
        .where(Run.id == run_id, Run.attempts < max_attempts, _claimable(now))
        .values(
            status=RunStatus.RUNNING,
            lease_owner=bindparam("claim_owner", type_=String),
            lease_expires_at=bindparam("claim_expires", type_=Run.__table__.c.lease_expires_at.type),
            heartbeat_at=now,
            attempts=Run.attempts + 1,
            started_at=func.coalesce(Run.started_at, now),
            updated_at=now,
        )
        .returning(
            Run.id,
            Run.org_id,
            Run.agent_id,
            Run.agent_version,
            Run.input,
            Run.attempts,
            Run.started_at,
            Run.thread_id,
            last_seq.label("last_seq"),
            org_budget.label("org_budget"),
            may_resume.label("may_resume"),
            has_provider.label("has_provider"),
            *notified,
        )
    )
    if not postgres:
        return claimed.execution_options(synchronize_session=False)
    claim_cte = claimed.cte("claimed")
    data = func.jsonb_build_object(
        literal("status", String), literal(RunStatus.RUNNING.value, String), literal("attempt", String),
        claim_cte.c.attempts,
    )  # fmt: skip
    running = (
        insert(RunEvent)
        .from_select(
            ["run_id", "seq", "kind", "data", "created_at"],
            select(
                claim_cte.c.id,
                claim_cte.c.last_seq + 1,
                literal(EventKind.STATUS.value, String),
                data,
                bindparam("claim_event_at", type_=RunEvent.__table__.c.created_at.type),
            ),
        )
        .cte("running_event")
    )
    return select(claim_cte).add_cte(running)


def exhausted_error(attempts: int) -> str:
    return (
        f"the run was started {attempts} times and its worker stopped each time before it finished "
        "(RUN_MAX_ATTEMPTS reached)"
    )


async def exhaust(session: AsyncSession, run_id: uuid.UUID, *, now: datetime, max_attempts: int) -> bool:
    """Fail a claimable run that has used all its attempts (internal_error), with its event."""
    attempts = await session.scalar(select(Run.attempts).where(Run.id == run_id))
    result = await session.execute(
        update(Run)
        .where(Run.id == run_id, Run.attempts >= max_attempts, _claimable(now))
        .values(
            status=RunStatus.FAILED,
            stop_reason=StopReason.INTERNAL_ERROR,
            error=exhausted_error(int(attempts or 0)),
            lease_owner=None,
            lease_expires_at=None,
            finished_at=now,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if _rows(result) != 1:
        return False
    await append_event(
        session,
        run_id,
        EventKind.STATUS,
        {"status": RunStatus.FAILED, "stop_reason": StopReason.INTERNAL_ERROR},
    )
    return True


async def requeue_expired(
    session: AsyncSession, run_id: uuid.UUID, *, now: datetime, max_attempts: int
) -> bool:
    """Put a run whose lease expired back in the queue (attempts remain), with its event."""
    result = await session.execute(
        update(Run)
        .where(Run.id == run_id, Run.attempts < max_attempts, lease_expired(now))
        .values(
            status=RunStatus.QUEUED,
            lease_owner=None,
            lease_expires_at=None,
            dispatched_at=now,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if _rows(result) != 1:
        return False
    await append_event(session, run_id, EventKind.STATUS, {"status": RunStatus.QUEUED})
    return True


async def fence(session: AsyncSession, run_id: uuid.UUID, owner: str, now: datetime) -> None:
    """Lock the run row for this transaction, or raise LeaseLost if the lease is gone."""
    result = await session.execute(
        update(Run)
        .where(_held_by(run_id, owner))
        .values(updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if _rows(result) != 1:
        raise LeaseLost(str(run_id))


async def append_fenced(
    session: AsyncSession,
    run_id: uuid.UUID,
    owner: str,
    events: list[tuple[EventKind, dict[str, Any]]],
    first_seq: int,
    *,
    now: datetime,
) -> None:
    """`fence`, then append `events` numbered from `first_seq`, in the session's transaction;
    raise LeaseLost (nothing written) if the lease is gone."""
    await fence(session, run_id, owner, now)
    await append_events(session, run_id, events, first_seq)


async def append_fenced_at_once(
    session: AsyncSession,
    run_id: uuid.UUID,
    owner: str,
    events: list[tuple[EventKind, dict[str, Any]]],
    first_seq: int,
    *,
    now: datetime,
) -> None:
    """`append_fenced` on PostgreSQL as one statement in a session without a transaction
    (`db.session.create_read_sessionmaker`): one round trip where BEGIN, fence, INSERT,
    pg_notify and COMMIT were five.

    The fence's UPDATE runs in a WITH clause and takes the row lock as `fence` does; each
    event is inserted once per row it returns, so none when the lease is gone; the run's
    streams are notified (as `announce` would) only when the events were written. The
    statement commits on its own, all or nothing.
    """
    topic = topics.run_events(run_id)
    parameters = {
        **batch_parameters(events, first_seq, now),
        "fence_run_id": run_id,
        "fence_owner": owner,
        "fence_now": now,
        "fence_topic": topic,
    }
    if (await session.execute(_fenced_append_statement(), parameters)).first() is None:
        raise LeaseLost(str(run_id))
    hub = hub_of(session)
    if hub is not None:
        hub.deliver(topic)  # this process's waiters, as after a commit


def _held_by_bound(prefix: str) -> ColumnElement[bool]:
    """`_held_by` with the run id and owner as parameters `<prefix>_run_id`, `<prefix>_owner`:
    for statements built once per process. (No parameter may be named as a column of `runs`:
    an UPDATE's parameters name its SET clause.)"""
    run_id = bindparam(f"{prefix}_run_id", type_=Run.__table__.c.id.type)
    owner = bindparam(f"{prefix}_owner", type_=String)
    return and_(Run.id == run_id, Run.lease_owner == owner, Run.status == RunStatus.RUNNING)


@functools.cache
def _fenced_append_statement() -> Executable:
    """`append_fenced_at_once`'s statement, built once per process (`fence_*` parameters and
    `batch_parameters`): built per batch, SQLAlchemy computed its cache key every time."""
    now = bindparam("fence_now", type_=Run.__table__.c.updated_at.type)
    fenced = update(Run).where(_held_by_bound("fence")).values(updated_at=now).returning(Run.id).cte("fence")
    inserted = _events_per_row(fenced).returning(RunEvent.seq).cte("inserted")
    written = select(func.count().label("rows")).select_from(inserted).subquery("written")
    topic = bindparam("fence_topic", type_=String)
    return select(written.c.rows, func.pg_notify(CHANNEL, topic)).where(written.c.rows > 0)


def _events_per_row(fenced: CTE) -> Insert:
    """INSERT of a batch (`batch_parameters`) for each run id the fencing UPDATE in `fenced`
    returned: none when it matched no row, so the events go in only under the lease."""
    batch = event_batch()
    return insert(events_table()).from_select(
        ["run_id", "seq", "kind", "data", "created_at"],
        select(fenced.c.id, batch.c.seq, batch.c.kind, batch.c.data, created_at_param()).join_from(
            fenced, batch, true()
        ),
    )


async def renew(
    session: AsyncSession, run_id: uuid.UUID, owner: str, *, now: datetime, lease_seconds: float
) -> bool:
    result = await session.execute(
        update(Run)
        .where(_held_by(run_id, owner))
        .values(lease_expires_at=now + timedelta(seconds=lease_seconds), heartbeat_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return _rows(result) == 1


async def renew_all(
    session: AsyncSession, run_ids: list[uuid.UUID], owner: str, *, now: datetime, lease_seconds: float
) -> dict[uuid.UUID, bool]:
    """Renew every lease this runner still holds among `run_ids`, in one statement.

    Returns the runs renewed, each with whether a cancel was requested; a run missing from
    the answer is no longer held by this runner.
    """
    if not run_ids:
        return {}
    statement = (
        update(Run)
        .where(Run.id.in_(run_ids), Run.lease_owner == owner, Run.status == RunStatus.RUNNING)
        .values(lease_expires_at=now + timedelta(seconds=lease_seconds), heartbeat_at=now, updated_at=now)
        .returning(Run.id, Run.cancel_requested_at)
        .execution_options(synchronize_session=False)
    )
    rows = (await session.execute(statement)).all()
    return {row.id: row.cancel_requested_at is not None for row in rows}


@dataclass(frozen=True, slots=True)
class LeaseState:
    held: bool
    cancel_requested: bool


async def lease_state(session: AsyncSession, run_id: uuid.UUID, owner: str) -> LeaseState:
    row = (
        await session.execute(
            select(Run.lease_owner, Run.status, Run.cancel_requested_at).where(Run.id == run_id)
        )
    ).first()
    if row is None:
        return LeaseState(held=False, cancel_requested=False)
    held = row.lease_owner == owner and row.status == RunStatus.RUNNING
    return LeaseState(held=held, cancel_requested=row.cancel_requested_at is not None)


def _usage_values(usage: Usage) -> dict[str, Any]:
    return {
        "requests": Run.requests + usage.requests,
        "input_tokens": Run.input_tokens + usage.input_tokens,
        "output_tokens": Run.output_tokens + usage.output_tokens,
    }


@dataclass(frozen=True, slots=True)
class Finished:
    """A run's row as its end was recorded: what its audit record and metrics report."""

    org_id: uuid.UUID
    status: str
    stop_reason: str | None
    attempts: int
    requests: int
    input_tokens: int
    output_tokens: int
    started_at: datetime | None
    finished_at: datetime | None
    # Whether the organization has an enabled webhook: only then are its subscriptions read
    # for the run's webhook event (most organizations have none: a statement less per run).
    webhooks: bool


FINISHED_COLUMNS = (
    Run.org_id,
    Run.status,
    Run.stop_reason,
    Run.attempts,
    Run.requests,
    Run.input_tokens,
    Run.output_tokens,
    Run.started_at,
    Run.finished_at,
    exists().where(Webhook.org_id == Run.org_id, Webhook.enabled.is_(True)).label("webhooks"),
)


def finished(row: Any) -> Finished:
    return Finished(
        org_id=row.org_id,
        status=row.status,
        stop_reason=row.stop_reason,
        attempts=row.attempts,
        requests=row.requests,
        input_tokens=row.input_tokens,
        output_tokens=row.output_tokens,
        started_at=row.started_at,
        finished_at=row.finished_at,
        webhooks=bool(row.webhooks),
    )


async def finish(
    session: AsyncSession,
    run_id: uuid.UUID,
    owner: str,
    outcome: RunOutcome,
    *,
    now: datetime,
    events: list[tuple[EventKind, dict[str, Any]]] | None = None,
    first_seq: int = 0,
) -> Finished | None:
    """Record the outcome (usage added to earlier attempts') and append `events` (numbered
    from `first_seq`) if the lease is still held; the row as recorded, or None (nothing
    written) when the lease is gone.

    On PostgreSQL one statement: the UPDATE in a WITH clause, the events inserted once per row
    it returns (as `append_fenced_at_once`), and the run's streams notified (at the commit)."""
    topic = topics.run_events(run_id)
    postgres = session.get_bind().dialect.name == "postgresql"
    notifies = _notifies(session)
    with_events = postgres and bool(events)
    parameters: dict[str, Any] = {
        "finish_run_id": run_id,
        "finish_owner": owner,
        "finish_status": outcome.status,
        "finish_stop_reason": outcome.stop_reason,
        "finish_output": outcome.output,
        "finish_error": outcome.error,
        "finish_now": now,
        "finish_requests": outcome.usage.requests,
        "finish_input_tokens": outcome.usage.input_tokens,
        "finish_output_tokens": outcome.usage.output_tokens,
        **({"finish_topic": topic} if notifies else {}),
        **(batch_parameters(events or [], first_seq, now) if with_events else {}),
    }
    row = (await session.execute(_finish_statement(postgres, notifies, with_events), parameters)).first()
    if row is None:
        return None
    if events and not postgres:
        await append_events(session, run_id, events, first_seq)
    if notifies:
        announce(session, topic, notified=True)
    return finished(row)


@functools.cache
def _finish_statement(postgres: bool, notifies: bool, with_events: bool) -> Executable:
    """`finish`'s statement, built once per process for each shape (`finish_*` parameters,
    and `batch_parameters` `with_events`)."""
    now = bindparam("finish_now", type_=Run.__table__.c.finished_at.type)
    notified = [notify_in(bindparam("finish_topic", type_=String)).label("notified")] if notifies else []
    recorded = (
        update(Run)
        .where(_held_by_bound("finish"))
        .values(
            status=bindparam("finish_status", type_=Run.__table__.c.status.type),
            stop_reason=bindparam("finish_stop_reason", type_=Run.__table__.c.stop_reason.type),
            output=bindparam("finish_output", type_=Run.__table__.c.output.type),
            error=bindparam("finish_error", type_=Run.__table__.c.error.type),
            lease_owner=None,
            lease_expires_at=None,
            finished_at=now,
            updated_at=now,
            requests=Run.requests + bindparam("finish_requests", type_=Integer),
            input_tokens=Run.input_tokens + bindparam("finish_input_tokens", type_=Integer),
            output_tokens=Run.output_tokens + bindparam("finish_output_tokens", type_=Integer),
        )
        .returning(Run.id, *FINISHED_COLUMNS, *notified)
    )
    if postgres and with_events:
        fenced = recorded.cte("recorded")
        return select(fenced).add_cte(_events_per_row(fenced).cte("inserted"))
    return recorded.execution_options(synchronize_session=False)


def _notifies(session: AsyncSession) -> bool:
    """Whether the session's transaction sends its notifications with `pg_notify`."""
    hub = hub_of(session)
    return hub is not None and hub.cross_process


async def pause(session: AsyncSession, run_id: uuid.UUID, owner: str, usage: Usage, *, now: datetime) -> bool:
    """The run waits for approval of tool calls: `requires_action`, the lease released, its
    usage so far added. Its attempts start again from zero: the stretch after the pause gets
    RUN_MAX_ATTEMPTS of its own."""
    result = await session.execute(
        update(Run)
        .where(_held_by(run_id, owner))
        .values(
            status=RunStatus.REQUIRES_ACTION,
            lease_owner=None,
            lease_expires_at=None,
            heartbeat_at=None,
            attempts=0,
            dispatched_at=None,
            updated_at=now,
            **_usage_values(usage),
        )
        .execution_options(synchronize_session=False)
    )
    return _rows(result) == 1


async def hand_back(
    session: AsyncSession, run_id: uuid.UUID, owner: str, usage: Usage, *, now: datetime
) -> bool:
    """Return a run to the queue on shutdown; the interrupted attempt is not counted."""
    result = await session.execute(
        update(Run)
        .where(_held_by(run_id, owner))
        .values(
            status=RunStatus.QUEUED,
            lease_owner=None,
            lease_expires_at=None,
            attempts=Run.attempts - 1,
            dispatched_at=None,
            updated_at=now,
            **_usage_values(usage),
        )
        .execution_options(synchronize_session=False)
    )
    return _rows(result) == 1


async def mark_dispatched(session: AsyncSession, run_id: uuid.UUID, *, now: datetime) -> None:
    await session.execute(
        update(Run)
        .where(Run.id == run_id, Run.status == RunStatus.QUEUED)
        .values(dispatched_at=now)
        .execution_options(synchronize_session=False)
    )


async def mark_undispatched(session: AsyncSession, run_ids: list[uuid.UUID]) -> None:
    """Forget that runs were handed to a queue that is going away; the sweep sends them again."""
    if run_ids:
        await session.execute(
            update(Run)
            .where(Run.id.in_(run_ids), Run.status == RunStatus.QUEUED)
            .values(dispatched_at=None)
            .execution_options(synchronize_session=False)
        )


async def expired_runs(session: AsyncSession, *, now: datetime, limit: int) -> list[uuid.UUID]:
    statement = select(Run.id).where(lease_expired(now)).order_by(Run.lease_expires_at).limit(limit)
    return list((await session.scalars(statement)).all())
