"""What a database failure means: an outage to wait out (503), or a bug (500).

Drivers and SQLAlchemy raise the same condition under many classes: a PostgreSQL restart
reaches the application as asyncpg's CannotConnectNowError wrapped in a plain DBAPIError,
as a ConnectionResetError, or as an InterfaceError on a connection SQLAlchemy has just
invalidated. So a failure is classified by what it carries, looked for anywhere in its
chain (`orig`, `__cause__`, `__context__`, exception groups): the SQLSTATE the server sent
(asyncpg, psycopg and SQLAlchemy's adapted errors all expose `sqlstate`), SQLite's result
code, the OS error underneath, or SQLAlchemy's own verdict that the connection is gone.
Anything else (an undefined table, a syntax error, a constraint) is not a fault of the
database's availability and stays a 500.
"""

from __future__ import annotations

import enum
import errno
import socket
import sqlite3
import sys
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeout

# Seconds a client should wait before retrying: an outage usually lasts a few seconds (a
# restart, a failover); a lost race for a lock or a serialisation conflict is over at once.
OUTAGE_RETRY_AFTER_SECONDS = 5
CONTENTION_RETRY_AFTER_SECONDS = 1
# How deep to follow an exception's chain; real chains are two or three links long.
_MAX_CHAIN = 32
_UNREACHABLE_ERRNOS = frozenset(
    {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EHOSTDOWN, errno.ENETDOWN, errno.EADDRNOTAVAIL}
)


class FaultKind(enum.StrEnum):
    CONNECTION_LOST = "connection_lost"
    SERVER_UNREACHABLE = "server_unreachable"
    SERVER_RESTARTING = "server_restarting"
    SERVER_READ_ONLY = "server_read_only"
    NO_ANSWER = "no_answer"
    STATEMENT_TIMEOUT = "statement_timeout"
    POOL_EXHAUSTED = "pool_exhausted"
    TOO_MANY_CONNECTIONS = "too_many_connections"
    INSUFFICIENT_RESOURCES = "insufficient_resources"
    CONTENTION = "contention"


# A connection that met one of these is dead or stuck in the middle of a command: sending it
# a ROLLBACK would only wait on the same server, so it is discarded instead.
_CONNECTION_UNUSABLE = frozenset(
    {FaultKind.CONNECTION_LOST, FaultKind.SERVER_RESTARTING, FaultKind.NO_ANSWER}
)


@dataclass(frozen=True, slots=True)
class DatabaseFault:
    """A failure that says the database cannot serve now, not that the request was wrong."""

    kind: FaultKind

    @property
    def retry_after(self) -> int:
        if self.kind is FaultKind.CONTENTION:
            return CONTENTION_RETRY_AFTER_SECONDS
        return OUTAGE_RETRY_AFTER_SECONDS

    @property
    def connection_unusable(self) -> bool:
        return self.kind in _CONNECTION_UNUSABLE


# PostgreSQL error codes (Appendix A of its manual). Exact codes first, then whole classes.
_SQLSTATES: dict[str, FaultKind] = {
    "08001": FaultKind.SERVER_UNREACHABLE,  # sqlclient_unable_to_establish_sqlconnection
    "08004": FaultKind.SERVER_UNREACHABLE,  # sqlserver_rejected_establishment_of_sqlconnection
    "25006": FaultKind.SERVER_READ_ONLY,  # read_only_sql_transaction: a standby after failover
    "40001": FaultKind.CONTENTION,  # serialization_failure
    "40003": FaultKind.CONNECTION_LOST,  # statement_completion_unknown
    "40P01": FaultKind.CONTENTION,  # deadlock_detected
    "53300": FaultKind.TOO_MANY_CONNECTIONS,
    "55P03": FaultKind.CONTENTION,  # lock_not_available (lock_timeout)
    "57000": FaultKind.SERVER_RESTARTING,  # operator_intervention
    "57014": FaultKind.STATEMENT_TIMEOUT,  # query_canceled (statement_timeout, a cancel)
    "57P01": FaultKind.SERVER_RESTARTING,  # admin_shutdown
    "57P02": FaultKind.SERVER_RESTARTING,  # crash_shutdown
    "57P03": FaultKind.SERVER_RESTARTING,  # cannot_connect_now: starting up or shutting down
    "57P05": FaultKind.CONNECTION_LOST,  # idle_session_timeout
    "58000": FaultKind.INSUFFICIENT_RESOURCES,  # system_error (outside PostgreSQL)
    "58030": FaultKind.INSUFFICIENT_RESOURCES,  # io_error
}
# 08P01 protocol_violation is a client bug, not an outage, although it is in class 08.
_NOT_FAULTS = frozenset({"08P01"})
_SQLSTATE_CLASSES: dict[str, FaultKind] = {
    "08": FaultKind.CONNECTION_LOST,  # connection_exception
    "53": FaultKind.INSUFFICIENT_RESOURCES,  # disk full, out of memory, limits
}

# SQLite primary result codes (https://sqlite.org/rescode.html); extended codes keep the
# primary one in their low byte (SQLITE_BUSY_SNAPSHOT is 517 = 5 | 2 << 8).
_SQLITE_CODES: dict[int, FaultKind] = {
    5: FaultKind.CONTENTION,  # SQLITE_BUSY: "database is locked"
    6: FaultKind.CONTENTION,  # SQLITE_LOCKED: "database table is locked"
    7: FaultKind.INSUFFICIENT_RESOURCES,  # SQLITE_NOMEM
    10: FaultKind.INSUFFICIENT_RESOURCES,  # SQLITE_IOERR
    13: FaultKind.INSUFFICIENT_RESOURCES,  # SQLITE_FULL
    14: FaultKind.SERVER_UNREACHABLE,  # SQLITE_CANTOPEN
}


def sqlstate_fault(sqlstate: str | None) -> FaultKind | None:
    """The fault a PostgreSQL SQLSTATE names, or None when it is not about availability."""
    if not sqlstate or sqlstate in _NOT_FAULTS:
        return None
    return _SQLSTATES.get(sqlstate) or _SQLSTATE_CLASSES.get(sqlstate[:2])


def sqlite_fault(result_code: int | None) -> FaultKind | None:
    """The fault a SQLite (extended) result code names, or None."""
    if result_code is None:
        return None
    return _SQLITE_CODES.get(result_code & 0xFF)


def _os_fault(exc: OSError) -> FaultKind | None:
    """Network failures only: a missing file or a full disk elsewhere is no database outage."""
    # TimeoutError is an OSError: a connect or command timeout, the server did not answer.
    if isinstance(exc, TimeoutError):
        return FaultKind.NO_ANSWER
    if isinstance(exc, ConnectionRefusedError):
        return FaultKind.SERVER_UNREACHABLE
    if isinstance(exc, ConnectionError):
        return FaultKind.CONNECTION_LOST  # reset, aborted, broken pipe
    if isinstance(exc, socket.gaierror) or exc.errno in _UNREACHABLE_ERRNOS:
        return FaultKind.SERVER_UNREACHABLE
    if type(exc) is OSError and exc.errno is None:
        # What asyncio raises when every address of a host name refused or failed.
        return FaultKind.SERVER_UNREACHABLE
    return None


def _driver_fault(exc: BaseException) -> FaultKind | None:
    """Library-specific classes that carry no SQLSTATE."""
    if isinstance(exc, PoolTimeout):
        return FaultKind.POOL_EXHAUSTED
    if isinstance(exc, DisconnectionError):
        return FaultKind.CONNECTION_LOST
    # psycopg (the job queue's driver) is only imported by processes that use the queue:
    # if it is not loaded, the exception cannot be one of its own.
    psycopg_pool = sys.modules.get("psycopg_pool")
    if psycopg_pool is not None and isinstance(exc, psycopg_pool.PoolTimeout):
        return FaultKind.POOL_EXHAUSTED
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None and isinstance(exc, psycopg.OperationalError):
        # An OperationalError without SQLSTATE comes from libpq: no server, or it went away.
        return FaultKind.CONNECTION_LOST
    return None


def _one(exc: BaseException) -> FaultKind | None:
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str):
        return sqlstate_fault(sqlstate)
    if isinstance(exc, sqlite3.Error):
        return sqlite_fault(getattr(exc, "sqlite_errorcode", None))
    if isinstance(exc, DBAPIError):
        inner = _one(exc.orig) if exc.orig is not None else None
        if inner is None and exc.connection_invalidated:
            # SQLAlchemy found the connection closed under the statement (asyncpg's
            # "connection was closed in the middle of operation").
            return FaultKind.CONNECTION_LOST
        return inner
    found = _driver_fault(exc)
    if found is None and isinstance(exc, OSError):
        return _os_fault(exc)
    return found


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    pending = [exc]
    while pending and len(seen) < _MAX_CHAIN:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)


def classify(exc: BaseException) -> DatabaseFault | None:
    """The database fault `exc` stands for, or None when it is not one (a bug: a 500)."""
    for link in _chain(exc):
        kind = _one(link)
        if kind is not None:
            return DatabaseFault(kind)
    return None
