"""Sealing: committed records get their place in the chain, in order, exactly once.

A request inserts its record unsealed (chain.py). A sealer then, in one short transaction
per batch of up to SEAL_BATCH records of a chain:

1. locks the chain's head row (`SELECT ... FOR UPDATE`, with SKIP LOCKED for background
   sealers so a second instance moves on instead of queueing; on SQLite a no-op UPDATE
   takes the database write lock);
2. reads the chain's committed unsealed records ordered by (timestamp, id) (the partial
   index `ix_audit_logs_unsealed`), which is the sealed order: deterministic for any set
   of pending records;
3. under AUDIT_HMAC_KEY, refuses every record whose insert MAC does not verify (tamper.py:
   marked, never chained, an `audit_tamper_detected` event recorded in its place);
4. gives each remaining record the next sequence, the previous hash and its own link
   (HMAC under the record's key, or SHA-256 for an unkeyed record; canonical.py, keys.py),
   computed from the values as the database returns them, exactly as `verify` will;
5. updates those rows (only where still unsealed) and the head, checks that exactly the
   new sequences exist, and commits.

The head row is the only lock and only sealers (and prune) take it, so it never serialises
requests. Several sealers (one per API process) are safe: the head lock admits one per
chain at a time and, under READ COMMITTED, the next one sees the previous one's work.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import ColumnElement, Table, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from agentkeep.audit.canonical import record_hash
from agentkeep.audit.chain import ensure_chain
from agentkeep.audit.keys import AuditKeyring, keyring_of
from agentkeep.audit.models import AuditChainHead, AuditLog
from agentkeep.audit.tamper import TamperObserver, mac_problem, refuse_forged
from agentkeep.config import Settings
from agentkeep.db.engine import create_engine, create_sessionmaker

logger = structlog.get_logger("agentkeep.audit.sealing")

SEAL_BATCH = 500
# A background sealer passes when a record commits in its own process (commit_signal.py), and
# otherwise every SEAL_POLL_SECONDS: the sealing lag of records other processes wrote.
SEAL_POLL_SECONDS = 1.0
# Woken passes start at least this far apart: a burst of commits shares one pass.
SEAL_MIN_GAP_SECONDS = 0.05
MAX_BACKOFF = 5.0
STOP_TIMEOUT = 5.0

SealedObserver = Callable[[Sequence[datetime]], None]


class SealConflict(RuntimeError):
    """The rows sealed do not match the sequences assigned: someone else sealed concurrently."""


def _tables() -> tuple[Table, Table]:
    logs, heads = AuditLog.__table__, AuditChainHead.__table__
    assert isinstance(logs, Table)
    assert isinstance(heads, Table)
    return logs, heads


_LOGS, _HEADS = _tables()
_SEAL_ROW = (
    update(_LOGS)
    .where(_LOGS.c.id == bindparam("b_id"), _LOGS.c.sequence.is_(None))
    .values(sequence=bindparam("b_sequence"), prev_hash=bindparam("b_prev_hash"), hash=bindparam("b_hash"))
)


async def _lock_head_postgres(session: AsyncSession, chain: str, wait: bool) -> tuple[int, str] | None:
    locked = (
        select(_HEADS.c.sequence, _HEADS.c.hash)
        .where(_HEADS.c.chain == chain)
        .with_for_update(skip_locked=not wait)
    )
    row = (await session.execute(locked)).one_or_none()
    if row is None:
        if await session.scalar(select(_HEADS.c.chain).where(_HEADS.c.chain == chain)) is not None:
            return None  # another sealer holds this chain
        await ensure_chain(session, chain)
        row = (await session.execute(locked)).one_or_none()
    return None if row is None else (int(row[0]), str(row[1]))


async def _lock_head_sqlite(session: AsyncSession, chain: str) -> tuple[int, str] | None:
    # The write comes first so the transaction holds the write lock before it reads.
    await ensure_chain(session, chain)
    row = (
        await session.execute(
            update(_HEADS)
            .where(_HEADS.c.chain == chain)
            .values(sequence=_HEADS.c.sequence)
            .returning(_HEADS.c.sequence, _HEADS.c.hash)
        )
    ).one()
    return int(row[0]), str(row[1])


async def lock_head(session: AsyncSession, chain: str, *, wait: bool = True) -> tuple[int, str] | None:
    """Lock `chain`'s head row in the caller's transaction; (sequence, hash), or None if busy."""
    if session.get_bind().dialect.name == "postgresql":
        return await _lock_head_postgres(session, chain, wait)
    return await _lock_head_sqlite(session, chain)


def sealable(keyring: AuditKeyring | None) -> ColumnElement[bool]:
    """Pending records this sealer may look at: never a refused one; without a key, no keyed one."""
    condition = _LOGS.c.sequence.is_(None) & _LOGS.c.seal_refused.is_(None)
    return condition if keyring is not None else condition & _LOGS.c.key_id.is_(None)


async def _pending(
    session: AsyncSession, chain: str, keyring: AuditKeyring | None, batch_size: int
) -> list[dict[str, Any]]:
    statement = (
        select(_LOGS)
        .where(_LOGS.c.chain == chain, sealable(keyring))
        .order_by(_LOGS.c.timestamp, _LOGS.c.id)
        .limit(batch_size)
    )
    return [dict(row) for row in (await session.execute(statement)).mappings()]


def link_hash(keyring: AuditKeyring | None, content: dict[str, Any]) -> str:
    """A sealed record's link: HMAC under its own key when keyed, SHA-256 when not."""
    key = None if keyring is None else keyring.get(content.get("key_id"))
    return record_hash(content) if key is None else key.chain_hash(content)


async def seal_batch(
    session: AsyncSession,
    chain: str,
    *,
    wait: bool = True,
    batch_size: int = SEAL_BATCH,
    on_tamper: TamperObserver | None = None,
) -> list[datetime] | None:
    """Seal up to `batch_size` pending records of `chain` in the caller's transaction.

    Returns the sealed records' timestamps in sealed order (empty if nothing was pending),
    or None when `wait` is false and another sealer holds the chain.
    """
    head = await lock_head(session, chain, wait=wait)
    if head is None:
        return None
    sequence, prev_hash = head
    keyring = keyring_of(session)
    pending = await _pending(session, chain, keyring, batch_size)
    if keyring is not None:
        forged = [(row["id"], problem) for row in pending if (problem := mac_problem(keyring, row))]
        if forged:
            # Marked rows drop out of the queue; the detection events take their turn in it.
            await refuse_forged(session, chain, forged, on_tamper)
            pending = await _pending(session, chain, keyring, batch_size)
    first, updates, stamps, before_last = sequence + 1, [], [], prev_hash
    for row in pending:
        sequence += 1
        content: dict[str, Any] = {**row, "sequence": sequence, "prev_hash": prev_hash}
        sealed_hash = link_hash(keyring, content)
        updates.append(
            {"b_id": row["id"], "b_sequence": sequence, "b_prev_hash": prev_hash, "b_hash": sealed_hash}
        )
        stamps.append(row["timestamp"])
        before_last, prev_hash = prev_hash, sealed_hash
    if not updates:
        return []
    await session.execute(_SEAL_ROW, updates)
    sealed = await session.scalar(
        select(func.count())
        .select_from(_LOGS)
        .where(_LOGS.c.chain == chain, _LOGS.c.sequence.between(first, sequence))
    )
    if sealed != len(updates):
        raise SealConflict(f"chain {chain!r}: {sealed} rows hold the {len(updates)} sequences just assigned")
    await session.execute(
        update(_HEADS)
        .where(_HEADS.c.chain == chain)
        .values(sequence=sequence, prev_hash=before_last, hash=prev_hash)
    )
    return stamps


async def pending_chains(session: AsyncSession) -> list[str]:
    """The chains that have records this sealer may seal (committed ones, or the caller's own)."""
    condition = sealable(keyring_of(session))
    statement = select(_LOGS.c.chain).where(condition).distinct().order_by(_LOGS.c.chain)
    return list((await session.scalars(statement)).all())


async def seal_with(
    session: AsyncSession,
    chains: Sequence[str] | None = None,
    *,
    wait: bool = True,
    batch_size: int = SEAL_BATCH,
    on_sealed: SealedObserver | None = None,
    on_tamper: TamperObserver | None = None,
) -> int:
    """Seal every record committed so far (of `chains`, default all), one transaction per batch.

    `session` must not be in a transaction. With `wait` false a chain another sealer holds
    is skipped (that sealer will take its records); with `wait` true it waits its turn.
    """
    if chains is None:
        async with session.begin():
            chains = await pending_chains(session)
    total = 0
    for chain in chains:
        while True:
            async with session.begin():
                stamps = await seal_batch(
                    session, chain, wait=wait, batch_size=batch_size, on_tamper=on_tamper
                )
            if stamps is None:
                break
            total += len(stamps)
            if stamps and on_sealed is not None:
                on_sealed(stamps)
            if len(stamps) < batch_size:
                break
    return total


async def seal_pending(
    sessionmaker: async_sessionmaker[AsyncSession],
    chains: Sequence[str] | None = None,
    *,
    wait: bool = True,
    batch_size: int = SEAL_BATCH,
    on_sealed: SealedObserver | None = None,
    on_tamper: TamperObserver | None = None,
) -> int:
    """`seal_with` on a session of its own; returns how many records were sealed."""
    async with sessionmaker() as session:
        return await seal_with(
            session, chains, wait=wait, batch_size=batch_size, on_sealed=on_sealed, on_tamper=on_tamper
        )


async def count_unsealed(session: AsyncSession, chain: str) -> tuple[int, datetime | None]:
    """How many records of `chain` are not sealed yet, and the oldest one's timestamp."""
    row = (
        await session.execute(
            select(func.count(), func.min(_LOGS.c.timestamp)).where(
                _LOGS.c.chain == chain, _LOGS.c.sequence.is_(None)
            )
        )
    ).one()
    return int(row[0]), row[1]


class AuditSealer:
    """Seals pending records in the background for the life of the application.

    Started in the app lifespan; `stop()` ends the loop after one last pass, so records of
    the requests drained at shutdown are sealed too. A pass follows `wake()` (a commit of
    records in this process: commit_signal.py) within `min_gap`, and otherwise comes every
    `interval` seconds, which finds records written elsewhere. Database errors are logged
    (type only) and retried with backoff; they never reach a request.
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        interval: float = SEAL_POLL_SECONDS,
        min_gap: float = SEAL_MIN_GAP_SECONDS,
        batch_size: int = SEAL_BATCH,
        on_sealed: SealedObserver | None = None,
        on_tamper: TamperObserver | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.interval = interval
        self.min_gap = min_gap
        self.batch_size = batch_size
        self.on_sealed = on_sealed
        self.on_tamper = on_tamper
        self.passes = 0  # completed passes over the pending records, successful or not
        self._stopping = asyncio.Event()
        self._wakeup = asyncio.Event()  # set by wake() and by stop()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._engine: AsyncEngine | None = None

    @classmethod
    def from_settings(cls, settings: Settings, *, on_tamper: TamperObserver | None = None) -> AuditSealer:
        """A sealer on its own one-connection engine: it never takes a connection a request needs."""
        engine = create_engine(settings.model_copy(update={"db_pool_size": 1, "db_max_overflow": 0}))
        sealer = cls(create_sessionmaker(engine), on_tamper=on_tamper)
        sealer._engine = engine
        return sealer

    def start(self) -> None:
        if self._task is None:
            self._loop = asyncio.get_running_loop()
            self._task = asyncio.create_task(self._run(), name="audit-sealer")

    def wake(self) -> None:
        """Records were committed: pass soon. Cheap, and safe to call from any thread."""
        loop = self._loop
        if loop is None or self._wakeup.is_set():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wakeup.set()
            return
        with contextlib.suppress(RuntimeError):  # the loop has closed: nothing left to seal
            loop.call_soon_threadsafe(self._wakeup.set)

    async def stop(self) -> None:
        if self._task is None:
            return
        self._stopping.set()
        self._wakeup.set()
        try:
            await asyncio.wait_for(self._task, STOP_TIMEOUT)
        except TimeoutError:
            logger.warning("audit_sealer_stop_timeout")
        self._task = None
        if self._engine is not None:
            await self._engine.dispose()

    async def _pass(self) -> bool:
        try:
            await seal_pending(
                self.sessionmaker,
                wait=False,
                batch_size=self.batch_size,
                on_sealed=self.on_sealed,
                on_tamper=self.on_tamper,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the loop must survive anything; verify flags stale records
            logger.warning("audit_seal_failed", error=type(exc).__name__)
            return False
        finally:
            self.passes += 1
        return True

    async def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            self._wakeup.clear()  # a commit during the pass asks for the next one
            started = time.monotonic()
            if await self._pass():
                failures = 0
                await _until(self._wakeup, self.interval)  # a commit, the safety poll, or stop()
                await _until(self._stopping, started + self.min_gap - time.monotonic())
            else:  # the database is failing: commits do not hurry the retry
                failures = min(failures + 1, 16)
                await _until(self._stopping, min(self.interval * 2**failures, MAX_BACKOFF))
        await self._pass()


async def _until(event: asyncio.Event, seconds: float) -> None:
    """Wait for `event`, at most `seconds`."""
    if seconds > 0 and not event.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)
