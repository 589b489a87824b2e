"""The event sink of a run attempt: events appended under the run's lease, in batches."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from pydantic import JsonValue
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agentkeep.db.faults import DatabaseFault, classify
from agentkeep.runs.contract import Usage
from agentkeep.runs.states import EventKind
from agentkeep.worker import leases
from agentkeep.worker.leases import Claim


def _now() -> datetime:
    return datetime.now(UTC)


# How long the writer waits for more events before it writes a batch.
LINGER_SECONDS = 0.025


class FencedEventSink:
    """Appends a run attempt's events under its lease, in batches (group commit).

    `emit` only queues the event and returns; a writer task takes everything queued so far
    and writes it in one short transaction: the fence (leases.fence), the events numbered in
    order, one announcement for the run's streams. While a batch is being written, the next
    events gather, so a step's events (a response, its tool calls and their results) cost one
    transaction, not one each, and a busy worker writes fewer, larger batches. Streams still
    see each event as soon as its batch commits.

    A write that fails (the lease lost, the database gone) stops the writer: the failure is
    kept, raised by the next `emit` and by `drain`, and reported to `on_failure` at once.
    Before it takes a batch, the writer lingers `linger` seconds (a few hundredths), so the
    events of a step that arrive together are written together even while the loop is busy
    with other runs; streams see an event at most that much later.

    `drain` waits until everything emitted is written. `settle` instead stops the writer and
    hands over what it has not written yet: the driver writes those events in the transaction
    that records the outcome (after them, the final status), saving that batch its own.
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        claim: Claim,
        owner: str,
        autocommit: async_sessionmaker[AsyncSession] | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        # PostgreSQL: sessions without a transaction, for a batch written in one statement.
        self.autocommit = autocommit
        self.run_id = claim.run_id
        self.owner = owner
        self.next_seq = claim.next_seq
        # Usage seen in model responses, kept for attempts that end without an outcome.
        self.usage = Usage()
        # Set when an event could not be written for want of a database: the executor turns
        # every exception into an outcome, and this one must not become the run's result.
        self.database_fault: DatabaseFault | None = None
        self.failure: Exception | None = None
        self.on_failure: Callable[[Exception], None] | None = None
        self.batches = 0
        self.linger = LINGER_SECONDS
        self._queued: list[tuple[EventKind, dict[str, JsonValue]]] = []
        self._wake = asyncio.Event()
        self._written = asyncio.Event()
        self._written.set()
        self._writer: asyncio.Task[None] | None = None
        # Set by `settle`: the writer takes no further batch.
        self._settled = False
        self._writing = False

    async def emit(self, kind: EventKind, data: Mapping[str, JsonValue]) -> None:
        if self.failure is not None:
            raise self.failure
        self._queued.append((kind, dict(data)))
        self._written.clear()
        if kind == EventKind.MODEL_RESPONSE:
            self._count_usage(data.get("usage"))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_forever(), name=f"events-{self.run_id}")
        self._wake.set()

    async def drain(self) -> None:
        """Return once every emitted event is written; raise the write failure if one failed."""
        if self._queued and self._writer is not None and not self._writer.done():
            self._wake.set()
        if self._writer is not None and not self._writer.done():
            await self._written.wait()
        if self.failure is not None:
            raise self.failure

    async def settle(self) -> list[tuple[EventKind, dict[str, JsonValue]]]:
        """Wait for the batch being written, stop writing, and return the events still queued
        (numbered from `next_seq`) for the caller to write under the lease; raise the write
        failure if one failed. Events emitted afterwards are not written."""
        self._settled = True
        if self._writer is not None and not self._writer.done():
            if not self._writing:
                self._writer.cancel()  # waiting or lingering: what is queued is the caller's
            await asyncio.gather(self._writer, return_exceptions=True)
        if self.failure is not None:
            raise self.failure
        pending, self._queued = self._queued, []
        return pending

    async def close(self) -> None:
        """Stop the writer (what is still queued is dropped: call `drain` first to keep it)."""
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)

    async def _write_forever(self) -> None:
        while not self._settled:
            await self._wake.wait()
            self._wake.clear()
            while self._queued and not self._settled:
                await asyncio.sleep(self.linger)
                batch, self._queued = self._queued, []
                self._writing = True
                try:
                    await self._write(batch)
                except Exception as exc:
                    self.database_fault = self.database_fault or classify(exc)
                    self.failure = exc
                    self._written.set()
                    if self.on_failure is not None:
                        self.on_failure(exc)
                    return
                finally:
                    self._writing = False
            self._written.set()

    async def _write(self, batch: list[tuple[EventKind, dict[str, JsonValue]]]) -> None:
        if self.autocommit is not None:
            async with self.autocommit() as session:
                await leases.append_fenced_at_once(
                    session, self.run_id, self.owner, batch, self.next_seq, now=_now()
                )
        else:
            async with self.sessionmaker() as session, session.begin():
                await leases.append_fenced(session, self.run_id, self.owner, batch, self.next_seq, now=_now())
        self.next_seq += len(batch)
        self.batches += 1

    def _count_usage(self, usage: JsonValue) -> None:
        if not isinstance(usage, dict):
            return
        self.usage.requests += 1
        for field in ("input_tokens", "output_tokens"):
            value = usage.get(field)
            if isinstance(value, int):
                setattr(self.usage, field, getattr(self.usage, field) + value)
