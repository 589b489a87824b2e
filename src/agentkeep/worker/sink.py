"""The event sink of a run attempt: each event appended under the run's lease."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from pydantic import JsonValue
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agentkeep.db.faults import DatabaseFault, classify
from agentkeep.runs.contract import Usage
from agentkeep.runs.repository import append_event
from agentkeep.runs.states import EventKind
from agentkeep.worker import leases
from agentkeep.worker.leases import Claim


def _now() -> datetime:
    return datetime.now(UTC)


class FencedEventSink:
    """Appends events under the lease, each in its own short transaction (streams see them live)."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], claim: Claim, owner: str) -> None:
        self.sessionmaker = sessionmaker
        self.run_id = claim.run_id
        self.owner = owner
        self.next_seq = claim.next_seq
        # Usage seen in model responses, kept for attempts that end without an outcome.
        self.usage = Usage()
        # Set when an event could not be written for want of a database: the executor turns
        # every exception into an outcome, and this one must not become the run's result.
        self.database_fault: DatabaseFault | None = None

    async def emit(self, kind: EventKind, data: Mapping[str, JsonValue]) -> None:
        try:
            async with self.sessionmaker() as session, session.begin():
                await leases.fence(session, self.run_id, self.owner, _now())
                await append_event(session, self.run_id, kind, data, seq=self.next_seq)
        except Exception as exc:
            self.database_fault = self.database_fault or classify(exc)
            raise
        self.next_seq += 1
        if kind == EventKind.MODEL_RESPONSE:
            self._count_usage(data.get("usage"))

    def _count_usage(self, usage: JsonValue) -> None:
        if not isinstance(usage, dict):
            return
        self.usage.requests += 1
        for field in ("input_tokens", "output_tokens"):
            value = usage.get(field)
            if isinstance(value, int):
                setattr(self.usage, field, getattr(self.usage, field) + value)
