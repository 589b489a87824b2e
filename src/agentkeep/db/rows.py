"""Lists read straight into their response models: the columns a model shows, as rows.

A list endpoint that only serialises what it reads selects these columns and validates each
row mapping into the response model: no ORM object, identity map entry or change tracking
is built for a row that is thrown away once serialised.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Dialect, Select
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from agentkeep.db.faults import classify


def columns_for(model: type[Any], schema: type[BaseModel]) -> tuple[InstrumentedAttribute[Any], ...]:
    """`model`'s attributes named by `schema`'s fields (or by their validation alias), in
    the schema's order. A field the model lacks fails here, at import, not per request."""
    names = [
        field.validation_alias if isinstance(field.validation_alias, str) else name
        for name, field in schema.model_fields.items()
    ]
    return tuple(getattr(model, name) for name in names)


class RowQuery:
    """A SELECT built once with named parameters, run as rows (dicts by column name).

    On PostgreSQL with asyncpg it is compiled once and sent on the session's connection
    through the driver itself: SQLAlchemy's per-execution work (cache key, execution
    context, cursor adaptation, result processing) is most of what a short read costs in
    Python. That needs values the driver takes as they are (UUID, aware datetime, str, int)
    and columns it decodes as SQLAlchemy would (timestamps with time zone arrive in UTC,
    JSONB through the codec the dialect installs on each connection). Its errors are the
    driver's own, which agentkeep.db.faults classifies like SQLAlchemy's. Elsewhere
    (SQLite) the session executes the statement.
    """

    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement
        self._compiled: tuple[str, tuple[str, ...]] | None = None

    def _for(self, dialect: Dialect) -> tuple[str, tuple[str, ...]]:
        if self._compiled is None:  # the same for every asyncpg engine
            sql = self.statement.compile(dialect=dialect)
            self._compiled = (sql.string, tuple(sql.positiontup or ()))
        return self._compiled

    async def rows(self, session: AsyncSession, parameters: Mapping[str, Any]) -> list[dict[str, Any]]:
        dialect = session.get_bind().dialect
        if dialect.name == "postgresql" and dialect.driver == "asyncpg":
            sql, names = self._for(dialect)
            connection = await session.connection()
            driver: Any = (await connection.get_raw_connection()).driver_connection
            try:
                records = await driver.fetch(sql, *(parameters[name] for name in names))
            except Exception as exc:
                await _settle_failure(connection, driver, exc)
                raise
            return [dict(record) for record in records]
        result = await session.execute(self.statement, parameters)
        keys = tuple(result.keys())
        return [dict(zip(keys, row, strict=True)) for row in result]


async def _settle_failure(connection: AsyncConnection, driver: Any, exc: Exception) -> None:
    """What SQLAlchemy does for its own statements, for one sent past it: a connection that
    died under the statement is invalidated (never handed to the next request), and a
    driver error that says only "closed" (asyncpg's InterfaceError carries no SQLSTATE) is
    raised as the disconnection it is, a 503 rather than a 500."""
    fault = classify(exc)
    if fault is not None and not fault.connection_unusable:
        return
    if fault is None and not driver.is_closed():
        return  # not about the connection: a bug, left as it is
    await connection.invalidate(exc)
    if fault is None:
        raise DisconnectionError(f"the connection closed under the statement ({type(exc).__name__})") from exc
