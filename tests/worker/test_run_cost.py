"""What the driver does once instead of per run, and the event batch written in one statement
(PostgreSQL) keeping the fence: on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy import event, select, update
from sqlalchemy.engine.interfaces import CacheStats

from agentkeep.notify import topics
from agentkeep.notify.announce import CHANNEL
from agentkeep.orgs.models import Organization
from agentkeep.runs.contract import EventSink, RunOutcome, RunRequest, Transcript
from agentkeep.runs.executor import execute
from agentkeep.runs.models import Run
from agentkeep.runs.repository import append_events
from agentkeep.runs.states import EventKind, RunStatus, StopReason
from agentkeep.tools.context import ToolContext
from agentkeep.worker import leases
from agentkeep.worker.driver import RunDriver
from agentkeep.worker.leases import LeaseLost
from agentkeep.worker.sink import FencedEventSink
from tests.worker.helpers import Sessionmaker, assert_gap_free, events, load_run, make_run, statuses

DriverFactory = Callable[..., RunDriver]


async def _claim(sessionmaker: Sessionmaker, run_id: uuid.UUID, owner: str, lease: float) -> leases.Claim:
    async with sessionmaker() as session, session.begin():
        claim = await leases.claim(
            session, run_id, owner, now=datetime.now(UTC), lease_seconds=lease, max_attempts=3
        )
    assert claim is not None
    return claim


async def _another_run_of(sessionmaker: Sessionmaker, run_id: uuid.UUID, run_input: str) -> uuid.UUID:
    async with sessionmaker() as session, session.begin():
        first = (await session.scalars(select(Run).where(Run.id == run_id))).one()
        run = Run(org_id=first.org_id, agent_id=first.agent_id, agent_version=1, input=run_input)
        session.add(run)
        await session.flush()
        return run.id


async def test_an_event_batch_of_a_runner_that_lost_its_lease_is_refused_whole(
    sessionmaker: Sessionmaker, make_driver: DriverFactory
) -> None:
    # The driver's own way of writing batches: one statement on PostgreSQL, a transaction on SQLite.
    autocommit = make_driver("w", execute).autocommit
    run_id = await make_run(sessionmaker)
    stale = await _claim(sessionmaker, run_id, "paused-worker", lease=30)
    # Another runner took the run over (as a claim after the lease lapsed would).
    async with sessionmaker() as session, session.begin():
        await session.execute(update(Run).where(Run.id == run_id).values(lease_owner="new-worker"))

    stale_sink = FencedEventSink(sessionmaker, stale, "paused-worker", autocommit)
    await stale_sink.emit(EventKind.MODEL_REQUEST, {"step": 1})
    await stale_sink.emit(EventKind.MODEL_RESPONSE, {"step": 1})
    with pytest.raises(LeaseLost):
        await stale_sink.drain()
    await stale_sink.close()
    assert [row.kind for row in await events(sessionmaker, run_id)] == ["status"]

    holder = FencedEventSink(sessionmaker, stale, "new-worker", autocommit)
    await holder.emit(EventKind.MODEL_REQUEST, {"step": 1})
    await holder.emit(EventKind.MODEL_RESPONSE, {"step": 1, "text": "two"})
    await holder.drain()
    await holder.close()
    rows = await events(sessionmaker, run_id)
    assert_gap_free(rows)
    assert [(row.kind, row.data) for row in rows[1:]] == [
        ("model_request", {"step": 1}),
        ("model_response", {"step": 1, "text": "two"}),
    ]
    run = await load_run(sessionmaker, run_id)
    assert run.lease_owner == "new-worker"


async def test_runs_of_one_agent_version_read_it_once_and_share_its_agent(
    sessionmaker: Sessionmaker, make_driver: DriverFactory
) -> None:
    first = await make_run(sessionmaker, "what is 6 * 7?", tools=[{"name": "calculator"}])
    second = await _another_run_of(sessionmaker, first, "what is 2 + 3?")
    driver = make_driver("w1", execute)
    engine = sessionmaker.kw["bind"].sync_engine
    version_reads: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if "FROM agent_versions" in statement:
            version_reads.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        assert await driver.drive(first) == RunStatus.COMPLETED
        assert await driver.drive(second) == RunStatus.COMPLETED
    finally:
        event.remove(engine, "before_cursor_execute", count)

    assert len(version_reads) == 1
    assert driver.agents is not None
    assert driver.agents.created == 1
    # Each run got its own answer through the shared agent: no state leaked between them.
    assert (await load_run(sessionmaker, first)).output == "calculator: 42"
    assert (await load_run(sessionmaker, second)).output == "calculator: 5"
    for run_id in (first, second):
        rows = await events(sessionmaker, run_id)
        assert_gap_free(rows)
        assert [row.kind for row in rows] == [
            "status",
            "model_request",
            "model_response",
            "tool_call",
            "tool_result",
            "model_request",
            "model_response",
            "output",
            "status",
        ]


async def test_after_a_first_run_every_statement_of_a_run_comes_from_the_compiled_cache(
    sessionmaker: Sessionmaker, make_driver: DriverFactory
) -> None:
    """Compiling SQL is CPU a worker pays per run only if a statement's shape changes with its
    data (inline VALUES rows did: a sixth of a worker's CPU). SQLAlchemy says per execution
    whether its compiled form came from the cache."""
    first = await make_run(sessionmaker, "what is 6 * 7?", tools=[{"name": "calculator"}])
    warm = await _another_run_of(sessionmaker, first, "what is 1 + 1?")
    second = await _another_run_of(sessionmaker, first, "what is 2 + 3? and 4 + 4?")
    driver = make_driver("w1", execute)
    engine = sessionmaker.kw["bind"].sync_engine
    compiled: list[str] = []

    def record(
        _conn: object, _cursor: object, statement: str, _params: object, context: Any, _many: bool
    ) -> None:
        if context is not None and context.cache_hit in (CacheStats.CACHE_MISS, CacheStats.NO_CACHE_KEY):
            compiled.append(f"{context.cache_hit.name}: {statement}")

    # Two runs first: on SQLite the ORM's UPDATE ... RETURNING is compiled twice before its
    # cache entry settles (SQLAlchemy's own warm-up), then never again.
    assert await driver.drive(first) == RunStatus.COMPLETED
    assert await driver.drive(warm) == RunStatus.COMPLETED
    # On SQLite a batch of events is an executemany of one INSERT, which SQLAlchemy compiles
    # apart from the same INSERT of one row (`for_executemany` is part of its cache key). How
    # the sink groups a run's events depends on timing, so both are written once here, on a
    # run nobody drives: which of the two the recorded run meets is then not a matter of luck.
    spare = await _another_run_of(sessionmaker, first, "what is 3 + 3?")
    async with sessionmaker() as session, session.begin():
        await append_events(session, spare, [(EventKind.OUTPUT, {"text": "one"})], 1)
        two = [(EventKind.OUTPUT, {"text": "two"}), (EventKind.OUTPUT, {"text": "three"})]
        await append_events(session, spare, two, 2)
    event.listen(engine, "after_cursor_execute", record)
    try:
        assert await driver.drive(second) == RunStatus.COMPLETED
    finally:
        event.remove(engine, "after_cursor_execute", record)
    assert compiled == [], "\n\n".join(compiled)


class _RequestSeen:
    """An executor that keeps the request it was given, then completes the run."""

    def __init__(self) -> None:
        self.request: RunRequest | None = None

    async def __call__(
        self,
        request: RunRequest,
        sink: EventSink,
        *,
        tool_context: ToolContext | None = None,
        transcript: Transcript | None = None,
    ) -> RunOutcome:
        self.request = request
        await sink.emit(EventKind.OUTPUT, {"text": "seen"})
        return RunOutcome(RunStatus.COMPLETED, StopReason.END_TURN, output="seen")


def _record_statements(sessionmaker: Sessionmaker) -> tuple[list[str], Callable[[], None]]:
    engine = sessionmaker.kw["bind"].sync_engine
    seen: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        seen.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", record)
    return seen, lambda: event.remove(engine, "before_cursor_execute", record)


async def test_a_run_reads_its_budget_provider_and_pause_in_its_claim_and_notifies_in_its_updates(
    sessionmaker: Sessionmaker, make_driver: DriverFactory, backend: str
) -> None:
    """An organization without a provider or a webhook, a run that never paused: building the
    request and recording the outcome read nothing besides what the claim's and the outcome's
    UPDATEs hand back; on PostgreSQL the run's streams are notified by those UPDATEs too."""
    own_budget = await make_run(sessionmaker, "own budget")
    org_id = (await load_run(sessionmaker, own_budget)).org_id
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(Organization).where(Organization.id == org_id).values(monthly_token_budget=900)
        )
    deployment_budget = await make_run(sessionmaker, "deployment default")
    executor = _RequestSeen()
    driver = make_driver("w1", executor, org_monthly_token_budget=500)

    seen, stop = _record_statements(sessionmaker)
    try:
        assert await driver.drive(own_budget) == RunStatus.COMPLETED
        assert executor.request is not None
        assert executor.request.token_budget == 900  # the organization's own (nothing used yet)
        assert await driver.drive(deployment_budget) == RunStatus.COMPLETED
        assert executor.request is not None
        assert executor.request.token_budget == 500  # none of its own: the deployment's
    finally:
        stop()

    reads = [
        s
        for s in seen
        if s.startswith("SELECT") and re.search(r"FROM (organizations|providers|run_approvals|webhooks)\b", s)
    ]
    assert reads == []
    if backend == "postgres":
        assert [s for s in seen if s.startswith("SELECT pg_notify")] == []
    for run_id in (own_budget, deployment_budget):
        assert await statuses(sessionmaker, run_id) == ["running", "completed"]
        assert_gap_free(await events(sessionmaker, run_id))


class _Abandoned(Exception):
    pass


async def _claim_then_abandon(sessionmaker: Sessionmaker, run_id: uuid.UUID) -> None:
    async with sessionmaker() as session, session.begin():
        claim = await leases.claim(
            session, run_id, "w1", now=datetime.now(UTC), lease_seconds=30, max_attempts=3
        )
        assert claim is not None
        raise _Abandoned  # the transaction rolls back


async def test_the_claim_and_the_outcome_notify_the_run_s_streams_at_their_commit_only(
    sessionmaker: Sessionmaker, database_url: str, backend: str
) -> None:
    if backend != "postgres":
        pytest.skip("notifications cross processes on PostgreSQL only")
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    await listener.add_listener(CHANNEL, lambda *args: heard.put_nowait(str(args[-1])))
    run_id = await make_run(sessionmaker)
    topic = topics.run_events(run_id)

    async def next_topic() -> str:
        return await asyncio.wait_for(heard.get(), 5)

    try:
        with pytest.raises(_Abandoned):
            await _claim_then_abandon(sessionmaker, run_id)
        await asyncio.sleep(0.2)
        assert heard.empty()  # rolled back: the claim and its notification never happened
        await _claim(sessionmaker, run_id, "w1", lease=30)
        assert await next_topic() == topic

        outcome = RunOutcome(RunStatus.COMPLETED, StopReason.END_TURN, output="done")
        async with sessionmaker() as session, session.begin():
            assert (
                await leases.finish(session, run_id, "someone-else", outcome, now=datetime.now(UTC)) is None
            )
        async with sessionmaker() as session, session.begin():
            recorded = await leases.finish(session, run_id, "w1", outcome, now=datetime.now(UTC))
            assert recorded is not None
            await append_events(session, run_id, [(EventKind.STATUS, {"status": "completed"})], 2)
        assert await next_topic() == topic  # once: the refused finish notified nobody
        await asyncio.sleep(0.2)
        assert heard.empty()
    finally:
        await listener.close()
    assert await statuses(sessionmaker, run_id) == ["running", "completed"]


async def test_an_outcome_and_its_last_events_are_one_write_refused_whole_without_the_lease(
    sessionmaker: Sessionmaker,
) -> None:
    """The outcome's UPDATE and the events it carries (on PostgreSQL one statement): a runner
    that lost its lease records neither; the holder records both, numbered on."""
    run_id = await make_run(sessionmaker)
    claim = await _claim(sessionmaker, run_id, "w1", lease=30)
    outcome = RunOutcome(RunStatus.COMPLETED, StopReason.END_TURN, output="done")
    last: list[tuple[EventKind, dict[str, Any]]] = [
        (EventKind.OUTPUT, {"text": "done"}),
        (EventKind.STATUS, {"status": "completed", "stop_reason": "end_turn"}),
    ]

    async def finish(owner: str) -> leases.Finished | None:
        async with sessionmaker() as session, session.begin():
            return await leases.finish(
                session, run_id, owner, outcome, now=datetime.now(UTC), events=last, first_seq=claim.next_seq
            )

    assert await finish("someone-else") is None
    assert [row.kind for row in await events(sessionmaker, run_id)] == ["status"]
    assert (await load_run(sessionmaker, run_id)).status == RunStatus.RUNNING

    recorded = await finish("w1")
    assert recorded is not None
    assert (recorded.status, recorded.webhooks) == ("completed", False)
    rows = await events(sessionmaker, run_id)
    assert_gap_free(rows)
    assert [(row.kind, row.data) for row in rows] == [
        ("status", {"status": "running", "attempt": 1}),
        ("output", {"text": "done"}),
        ("status", {"status": "completed", "stop_reason": "end_turn"}),
    ]
    run = await load_run(sessionmaker, run_id)
    assert (run.status, run.output, run.lease_owner) == ("completed", "done", None)
