"""Database failures are classified by what they mean, as the drivers report them.

The expectations are written from the PostgreSQL manual (Appendix A, "PostgreSQL Error
Codes": code, condition name, and what the condition is) and from SQLite's result code list
(https://sqlite.org/rescode.html), not from the classifier. Each PostgreSQL error is built
the way asyncpg builds it from the server's ErrorResponse, then wrapped the way SQLAlchemy
hands it to the application; errors that a real server can be made to send are also
provoked on the shared PostgreSQL.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy import text
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from agentkeep.config import Settings
from agentkeep.db.engine import create_engine
from agentkeep.db.faults import DatabaseFault, FaultKind, classify
from tests.support.databases import (
    create_postgres_database,
    drop_postgres_database,
    postgres_answers,
    unavailable,
)
from tests.test_engine_liveness import terminate

UNAVAILABLE = 503
BUG = 500

# (SQLSTATE, condition name in the manual, what the manual's condition means for a client)
POSTGRES_CODES: list[tuple[str, str, int, FaultKind | None]] = [
    # Class 08 - Connection Exception: the connection is gone or could not be made.
    ("08000", "connection_exception", UNAVAILABLE, FaultKind.CONNECTION_LOST),
    ("08003", "connection_does_not_exist", UNAVAILABLE, FaultKind.CONNECTION_LOST),
    ("08006", "connection_failure", UNAVAILABLE, FaultKind.CONNECTION_LOST),
    ("08001", "sqlclient_unable_to_establish_sqlconnection", UNAVAILABLE, FaultKind.SERVER_UNREACHABLE),
    ("08004", "sqlserver_rejected_establishment_of_sqlconnection", UNAVAILABLE, FaultKind.SERVER_UNREACHABLE),
    ("08007", "transaction_resolution_unknown", UNAVAILABLE, FaultKind.CONNECTION_LOST),
    # A protocol violation is a client bug, even though the manual files it under class 08.
    ("08P01", "protocol_violation", BUG, None),
    # Class 25: a write sent to a read-only server (a standby promoted away from, a failover).
    ("25006", "read_only_sql_transaction", UNAVAILABLE, FaultKind.SERVER_READ_ONLY),
    # Class 40 - Transaction Rollback: retrying the same request succeeds.
    ("40001", "serialization_failure", UNAVAILABLE, FaultKind.CONTENTION),
    ("40P01", "deadlock_detected", UNAVAILABLE, FaultKind.CONTENTION),
    ("40003", "statement_completion_unknown", UNAVAILABLE, FaultKind.CONNECTION_LOST),
    # Class 53 - Insufficient Resources.
    ("53000", "insufficient_resources", UNAVAILABLE, FaultKind.INSUFFICIENT_RESOURCES),
    ("53100", "disk_full", UNAVAILABLE, FaultKind.INSUFFICIENT_RESOURCES),
    ("53200", "out_of_memory", UNAVAILABLE, FaultKind.INSUFFICIENT_RESOURCES),
    ("53300", "too_many_connections", UNAVAILABLE, FaultKind.TOO_MANY_CONNECTIONS),
    # Class 55: lock_timeout expired waiting for another transaction.
    ("55P03", "lock_not_available", UNAVAILABLE, FaultKind.CONTENTION),
    # Class 57 - Operator Intervention.
    ("57014", "query_canceled", UNAVAILABLE, FaultKind.STATEMENT_TIMEOUT),
    ("57P01", "admin_shutdown", UNAVAILABLE, FaultKind.SERVER_RESTARTING),
    ("57P02", "crash_shutdown", UNAVAILABLE, FaultKind.SERVER_RESTARTING),
    ("57P03", "cannot_connect_now", UNAVAILABLE, FaultKind.SERVER_RESTARTING),
    ("57P05", "idle_session_timeout", UNAVAILABLE, FaultKind.CONNECTION_LOST),
    # Class 58 - System Error (errors external to PostgreSQL itself).
    ("58030", "io_error", UNAVAILABLE, FaultKind.INSUFFICIENT_RESOURCES),
    # Programming and data errors: bugs, or a request the service should have refused.
    ("42P01", "undefined_table", BUG, None),
    ("42703", "undefined_column", BUG, None),
    ("42601", "syntax_error", BUG, None),
    ("23505", "unique_violation", BUG, None),
    ("22P02", "invalid_text_representation", BUG, None),
    ("XX000", "internal_error", BUG, None),
    ("28P01", "invalid_password", BUG, None),
    ("3D000", "invalid_catalog_name", BUG, None),
]


def _asyncpg_error(sqlstate: str, message: str = "from the server") -> asyncpg.PostgresError:
    """What asyncpg raises when the server sends an ErrorResponse with this code."""
    error = asyncpg.PostgresError.new({"C": sqlstate, "M": message})
    assert isinstance(error, asyncpg.PostgresError)
    return error


def _as_sqlalchemy_raises_it(error: Exception, *, invalidated: bool = False) -> DBAPIError:
    """Wrapped twice, like SQLAlchemy's asyncpg dialect does: its DBAPI adapter, then DBAPIError."""
    dbapi = PGDialect_asyncpg.import_dbapi()  # type: ignore[no-untyped-call]
    adapted = next(
        adapter(error.args[0] if error.args else "", error)
        for cls in type(error).__mro__
        if (adapter := dbapi._asyncpg_error_translate.get(cls)) is not None
    )
    adapted.__cause__ = error
    wrapped = DBAPIError.instance("SELECT 1", None, adapted, dbapi.Error, connection_invalidated=invalidated)
    assert isinstance(wrapped, DBAPIError)
    return wrapped


def _verdict(fault: DatabaseFault | None) -> int:
    return UNAVAILABLE if fault is not None else BUG


@pytest.mark.parametrize(("sqlstate", "condition", "status", "kind"), POSTGRES_CODES)
def test_postgres_errors_are_classified_by_their_sqlstate(
    sqlstate: str, condition: str, status: int, kind: FaultKind | None
) -> None:
    raw = _asyncpg_error(sqlstate)
    # asyncpg's classes are generated from PostgreSQL's errcodes.txt: a code it does not know
    # would be a typo in this table.
    assert type(raw) is not asyncpg.exceptions._base.UnknownPostgresError, condition
    assert raw.sqlstate == sqlstate
    for error in (raw, _as_sqlalchemy_raises_it(raw)):
        fault = classify(error)
        assert _verdict(fault) == status, (sqlstate, type(error))
        assert (fault.kind if fault else None) == kind


@pytest.mark.parametrize(
    ("code", "name", "kind"),
    [
        (5, "SQLITE_BUSY", FaultKind.CONTENTION),
        (517, "SQLITE_BUSY_SNAPSHOT", FaultKind.CONTENTION),
        (6, "SQLITE_LOCKED", FaultKind.CONTENTION),
        (13, "SQLITE_FULL", FaultKind.INSUFFICIENT_RESOURCES),
        (10, "SQLITE_IOERR", FaultKind.INSUFFICIENT_RESOURCES),
        (3338, "SQLITE_IOERR_FSYNC", FaultKind.INSUFFICIENT_RESOURCES),
        (14, "SQLITE_CANTOPEN", FaultKind.SERVER_UNREACHABLE),
        (1, "SQLITE_ERROR", None),  # "no such table", syntax errors
        (11, "SQLITE_CORRUPT", None),
        (19, "SQLITE_CONSTRAINT", None),
    ],
)
def test_sqlite_errors_are_classified_by_their_result_code(
    code: int, name: str, kind: FaultKind | None
) -> None:
    error = sqlite3.OperationalError("from sqlite")
    error.sqlite_errorcode = code
    error.sqlite_errorname = name
    wrapped = DBAPIError.instance("SELECT 1", None, error, sqlite3.Error)
    fault = classify(wrapped)
    assert (fault.kind if fault else None) == kind


async def test_a_real_sqlite_lock_is_contention(tmp_path: Path) -> None:
    path = f"{tmp_path}/locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x INTEGER)")
    holder.execute("BEGIN EXCLUSIVE")
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}", connect_args={"timeout": 0.05})
    try:
        with pytest.raises(DBAPIError) as raised:
            async with engine.begin() as connection:
                await connection.execute(text("INSERT INTO t VALUES (1)"))
        fault = classify(raised.value)
        assert fault is not None
        assert fault.kind is FaultKind.CONTENTION
        assert fault.retry_after == 1
    finally:
        await engine.dispose()
        holder.close()


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed"), FaultKind.SERVER_UNREACHABLE),
        (ConnectionResetError(errno.ECONNRESET, "reset by peer"), FaultKind.CONNECTION_LOST),
        (BrokenPipeError(errno.EPIPE, "broken pipe"), FaultKind.CONNECTION_LOST),
        (TimeoutError(), FaultKind.NO_ANSWER),
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), FaultKind.SERVER_UNREACHABLE),
        (OSError(errno.EHOSTUNREACH, "No route to host"), FaultKind.SERVER_UNREACHABLE),
        (OSError("Multiple exceptions: [Errno 111] Connect call failed"), FaultKind.SERVER_UNREACHABLE),
        (PoolTimeout("QueuePool limit of size 1 overflow 0 reached"), FaultKind.POOL_EXHAUSTED),
        # A missing file or a permission problem is no database outage.
        (FileNotFoundError(errno.ENOENT, "No such file"), None),
        (PermissionError(errno.EACCES, "Permission denied"), None),
        (ValueError("a bug"), None),
        (KeyError("a bug"), None),
    ],
)
def test_os_and_pool_errors(error: Exception, kind: FaultKind | None) -> None:
    fault = classify(error)
    assert (fault.kind if fault else None) == kind


def test_a_connection_closed_mid_operation_is_a_lost_connection() -> None:
    # asyncpg: InterfaceError("connection was closed in the middle of operation"), which
    # SQLAlchemy reports with connection_invalidated once it finds the connection closed.
    raw = asyncpg.exceptions.InterfaceError("connection is closed")
    fault = classify(_as_sqlalchemy_raises_it(raw, invalidated=True))
    assert fault is not None
    assert fault.kind is FaultKind.CONNECTION_LOST
    assert fault.connection_unusable
    # The same InterfaceError on a connection that is still open is a misuse: a bug.
    assert classify(_as_sqlalchemy_raises_it(raw, invalidated=False)) is None


def test_faults_are_found_through_wrapping_and_groups() -> None:
    restart = _as_sqlalchemy_raises_it(_asyncpg_error("57P03", "the database system is starting up"))
    try:
        try:
            raise restart
        except DBAPIError as exc:
            raise RuntimeError("the job queue failed") from exc
    except RuntimeError as wrapper:
        fault = classify(wrapper)
    assert fault is not None
    assert fault.kind is FaultKind.SERVER_RESTARTING
    group = ExceptionGroup("tasks", [ValueError("unrelated"), ConnectionResetError()])
    grouped = classify(group)
    assert grouped is not None
    assert grouped.kind is FaultKind.CONNECTION_LOST


@pytest.fixture
async def pg_engine(make_settings: Callable[..., Settings]) -> AsyncIterator[AsyncEngine]:
    if not await postgres_answers():
        unavailable("PostgreSQL")
    url = await create_postgres_database("agentkeep_faults")
    engine = create_engine(make_settings(database_url=url, db_pool_size=2))
    try:
        yield engine
    finally:
        await engine.dispose()
        await drop_postgres_database(url)


async def _failure(engine: AsyncEngine, *statements: str) -> BaseException:
    try:
        async with engine.begin() as connection:
            for statement in statements:
                await connection.execute(text(statement))
    except Exception as exc:
        return exc
    raise AssertionError("the statements did not fail")


async def test_real_server_errors(pg_engine: AsyncEngine) -> None:
    timeout = classify(await _failure(pg_engine, "SET LOCAL statement_timeout = 50", "SELECT pg_sleep(2)"))
    assert timeout is not None
    assert timeout.kind is FaultKind.STATEMENT_TIMEOUT
    read_only = classify(await _failure(pg_engine, "SET TRANSACTION READ ONLY", "CREATE TABLE nope (x int)"))
    assert read_only is not None
    assert read_only.kind is FaultKind.SERVER_READ_ONLY
    assert classify(await _failure(pg_engine, "SELECT * FROM no_such_table")) is None
    assert classify(await _failure(pg_engine, "SELEC 1")) is None


async def test_a_terminated_backend_is_classified_as_unavailable(pg_engine: AsyncEngine) -> None:
    async with pg_engine.connect() as connection:
        await terminate((await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one())
        await asyncio.sleep(0.1)
        with pytest.raises(DBAPIError) as raised:
            await connection.execute(text("SELECT 1"))
    fault = classify(raised.value)
    # The server says "terminating connection due to administrator command" (57P01) when the
    # message arrives first, else the client finds the socket closed: either is an outage.
    assert fault is not None, repr(raised.value)
    assert fault.kind in {FaultKind.SERVER_RESTARTING, FaultKind.CONNECTION_LOST}
    assert fault.connection_unusable
