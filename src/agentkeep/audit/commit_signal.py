"""Waking the sealer when a transaction that wrote audit records commits in this process.

The API process's sealer (sealing.py) would otherwise have to poll often to keep the sealing
lag short. Instead its wake-up is attached to the engine the requests use; `insert_record`
marks the session that wrote a record, and once that session's outermost transaction has
committed (never on a rollback, never on a savepoint's release) the wake-up is called.
Records written by other processes (a worker, a second API instance) are still found by
the sealer's slower safety poll.

The wake-up is called on the event loop's thread, from inside the commit; it must only
signal (set an asyncio.Event), never block or touch the database.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

CommitSignal = Callable[[], None]

COMMIT_SIGNAL_OPTION = "agentkeep_audit_commit_signal"
_PENDING = "agentkeep.audit_pending"


def attach_commit_signal(engine: AsyncEngine, signal: CommitSignal) -> None:
    """Call `signal` after each commit, on `engine`, of a transaction that wrote a record."""
    engine.update_execution_options(**{COMMIT_SIGNAL_OPTION: signal})


def note_record(session: AsyncSession) -> None:
    """Remember that `session`'s transaction wrote a record (called by insert_record)."""
    signal: Any = session.get_bind().get_execution_options().get(COMMIT_SIGNAL_OPTION)
    if signal is not None:
        session.info[_PENDING] = signal


@event.listens_for(Session, "after_commit")
def _signal_after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint released: the records are not visible to anyone else yet
    signal: CommitSignal | None = session.info.pop(_PENDING, None)
    if signal is not None:
        signal()


@event.listens_for(Session, "after_soft_rollback")
def _forget_after_rollback(session: Session, previous_transaction: SessionTransaction) -> None:
    if previous_transaction.parent is None:  # the outermost transaction: its records are gone
        session.info.pop(_PENDING, None)
