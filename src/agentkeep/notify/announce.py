"""Announcing a change from inside the transaction that makes it.

`announce(session, topic)` delivers `topic` when the session's transaction commits, and
never if it rolls back: on PostgreSQL to every process, through a `pg_notify` sent just
before the commit (PostgreSQL delivers it at commit to every listener), and to this
process's hub at once after the commit (its own listener would also relay it). Announcing
is only a mark on the session: it costs nothing until the commit, and a topic announced
many times in one transaction is sent once.

The hub is attached to the engine (`attach_hub`), like the audit keys: every session of an
engine announces to the hub of the process that owns it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from agentkeep.notify.hub import Hub

CHANNEL = "agentkeep"
HUB_OPTION = "agentkeep_notify_hub"
_PENDING_KEY = "agentkeep_announced"


def attach_hub(engine: AsyncEngine) -> Hub:
    """Give the engine its hub: cross-process on PostgreSQL, in-process on SQLite."""
    hub = Hub(cross_process=engine.dialect.name == "postgresql")
    engine.update_execution_options(**{HUB_OPTION: hub})
    return hub


def hub_of_engine(engine: AsyncEngine) -> Hub:
    hub = engine.sync_engine.get_execution_options().get(HUB_OPTION)
    if not isinstance(hub, Hub):
        raise RuntimeError("the engine has no notification hub (create it with db.engine.create_engine)")
    return hub


def hub_of(session: AsyncSession | Session) -> Hub | None:
    hub = session.get_bind().get_execution_options().get(HUB_OPTION)
    return hub if isinstance(hub, Hub) else None


# The session's hub, the topics to notify before the commit, and those a statement of the
# transaction notified itself (`notify_in`): delivered to this process's hub all the same.
_Pending = tuple[Hub, set[str], set[str]]


def announce(session: AsyncSession | Session, topic: str, *, notified: bool = False) -> None:
    """Deliver `topic` to every waiter once the session's transaction commits.

    `notified`: a statement of this transaction already called `pg_notify` for the topic
    (`notify_in`, saving the separate statement before the commit): only this process's
    hub is left to tell after the commit.
    """
    hub = hub_of(session)
    if hub is not None:
        pending: _Pending = session.info.setdefault(_PENDING_KEY, (hub, set(), set()))
        (pending[2] if notified else pending[1]).add(topic)


def notify_in(topic: str | ColumnElement[str]) -> ColumnElement[Any]:
    """`pg_notify` of `topic` as a column of a statement (PostgreSQL only), e.g. in the
    RETURNING of an UPDATE, so that it is sent only when the UPDATE matched; PostgreSQL
    delivers it at the commit of the transaction, as `announce` would. Follow with
    `announce(session, topic, notified=True)`."""
    return func.pg_notify(CHANNEL, topic)


@event.listens_for(Session, "before_commit")
def _send(session: Session) -> None:
    pending: _Pending | None = session.info.get(_PENDING_KEY)
    if pending is not None and pending[0].cross_process:
        for topic in sorted(pending[1] - pending[2]):
            session.execute(select(func.pg_notify(CHANNEL, topic)))


@event.listens_for(Session, "after_commit")
def _deliver(session: Session) -> None:
    pending: _Pending | None = session.info.pop(_PENDING_KEY, None)
    if pending is not None:
        hub, topics, notified = pending
        for topic in topics | notified:
            hub.deliver(topic)


@event.listens_for(Session, "after_rollback")
def _forget(session: Session, *_args: Any) -> None:
    session.info.pop(_PENDING_KEY, None)
