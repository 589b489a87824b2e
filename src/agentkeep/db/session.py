"""The per-request session: one transaction, committed once before the response is sent.

A safe request (GET, HEAD) on PostgreSQL gets a session without a transaction instead
(`read_sessionmaker`, isolation level AUTOCOMMIT): each of its reads is one statement, with
no `BEGIN` before it nor `COMMIT` after. Under PostgreSQL's READ COMMITTED every statement
already took its own snapshot, so such a request reads what it read before. The few writes
a safe request makes are single statements (an API key's last use, through `on_success`),
and its audit records of refusals are written in their own transaction as for any request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated

import structlog
from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from agentkeep.db.engine import create_sessionmaker
from agentkeep.db.faults import classify

logger = structlog.get_logger("agentkeep.db")

AfterTransactionHook = Callable[[], Awaitable[None]]
_HOOKS_KEY = "agentkeep.after_transaction"
_COMMIT_HOOKS_KEY = "agentkeep.after_commit"
_NO_TRANSACTION_KEY = "agentkeep.no_transaction"
SAFE_METHODS = frozenset({"GET", "HEAD"})


def sessionmaker_of(request: Request) -> async_sessionmaker[AsyncSession]:
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    return sessionmaker


async def get_sessionmaker(request: Request) -> async_sessionmaker[AsyncSession]:
    return sessionmaker_of(request)


def create_read_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions for safe requests: on PostgreSQL without a transaction, on the same pool.

    The engine's execution options (notification hub, audit keys, commit signal) are copied
    here: build it once the engine has all of them. SQLite needs nothing of the kind (its
    driver opens a transaction only before a write) and gets the ordinary sessionmaker.
    """
    if engine.dialect.name != "postgresql":
        return create_sessionmaker(engine)
    return async_sessionmaker(
        engine.execution_options(isolation_level="AUTOCOMMIT"),
        expire_on_commit=False,
        autoflush=False,
        info={_NO_TRANSACTION_KEY: True},
    )


def without_transaction(session: AsyncSession) -> bool:
    """True for a safe request's session on PostgreSQL: every statement commits on its own."""
    return bool(session.info.get(_NO_TRANSACTION_KEY))


def after_transaction(session: AsyncSession, hook: AfterTransactionHook) -> None:
    """Run `hook` once the request's transaction has ended, committed or rolled back.

    This is how a failed request still leaves a trace (a `login_failed` audit record, say):
    the record is written in its own transaction after the request's rollback, so it never
    waits on locks the request itself holds.
    """
    session.info.setdefault(_HOOKS_KEY, []).append(hook)


async def on_success(session: AsyncSession, write: AfterTransactionHook) -> None:
    """Make a small write part of the request's outcome: it persists only if the request
    succeeds. In a transaction it runs now and commits or rolls back with the request; in a
    session without one (a safe request's) it runs once the request has succeeded."""
    if without_transaction(session):
        after_commit(session, write)
    else:
        await write()


def after_commit(session: AsyncSession, hook: AfterTransactionHook) -> None:
    """Run `hook` once the request's transaction has committed; never if it rolled back.

    For side effects that must only follow durable state, such as handing a newly created
    run to the queue.
    """
    session.info.setdefault(_COMMIT_HOOKS_KEY, []).append(hook)


async def _run_hooks(session: AsyncSession, *, committed: bool = False) -> None:
    hooks: list[AfterTransactionHook] = session.info.pop(_HOOKS_KEY, [])
    commit_hooks: list[AfterTransactionHook] = session.info.pop(_COMMIT_HOOKS_KEY, [])
    for hook in hooks:
        await hook()
    if committed:
        for hook in commit_hooks:
            await hook()


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """Yield a session; commit when the endpoint succeeds, roll back when it raises.

    Declared with scope="function" below so the commit happens before the response is
    sent: a failed commit becomes an error answer instead of a success that was lost.
    """
    if request.method in SAFE_METHODS:
        sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.read_sessionmaker
    else:
        sessionmaker = sessionmaker_of(request)
    async with _request_transaction(sessionmaker) as session:
        yield session


async def get_write_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A request session with a transaction whatever the method: for the few GET endpoints
    that write (the single sign-on redirect and callback, which a browser reaches by GET)."""
    async with _request_transaction(sessionmaker_of(request)) as session:
        yield session


def own_transaction(request: Request) -> AbstractAsyncContextManager[AsyncSession]:
    """A transaction apart from the request's, with the same commit, rollback and hooks
    (the console renews its cookie session in one, whatever the page then does)."""
    return _request_transaction(sessionmaker_of(request))


@asynccontextmanager
async def _request_transaction(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with sessionmaker() as session:
        try:
            yield session
        except BaseException as exc:
            await _abandon(session, exc)
            raise
        try:
            if without_transaction(session) and not (session.new or session.dirty or session.deleted):
                # Nothing to flush and no transaction to end: each statement committed on
                # its own. Giving the connection back is all a commit would do here.
                await session.close()
            else:
                await session.commit()
        except BaseException as exc:
            await _abandon(session, exc, rolled_back=True)
            raise
        await _run_hooks(session, committed=True)


async def _abandon(session: AsyncSession, exc: BaseException, *, rolled_back: bool = False) -> None:
    """End a failed request's transaction without letting the database hide its first error.

    During an outage (agentkeep.db.faults) the request's connection is dead or stuck in a
    command: a ROLLBACK over it would wait on the same server, up to DB_COMMAND_TIMEOUT, and
    its own failure would replace the original one. The connection is discarded instead (the
    server rolls back what it had), and the after-transaction hooks, which write to the same
    database, are skipped: the request is answered 503 at once.
    """
    fault = classify(exc)
    if fault is not None and fault.connection_unusable:
        await session.invalidate()
        logger.info("transaction_abandoned", fault=fault.kind)
        return
    if not rolled_back:
        try:
            await session.rollback()
        except Exception as rollback_error:
            if classify(rollback_error) is None:
                raise
            await session.invalidate()
            return
    await _run_hooks(session)


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
WriteSessionDep = Annotated[AsyncSession, Depends(get_write_session, scope="function")]
