"""Opaque cursors for keyset pagination: base64url JSON that clients pass back unchanged."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Annotated, Any, TypeVar

from pydantic import Field
from sqlalchemy import Select, and_, or_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from agentkeep.errors import InvalidInput

CURSOR_MAX_LENGTH = 512
DEFAULT_LIMIT = 50
MAX_LIMIT = 200

T = TypeVar("T")
# A SELECT of any columns or entities.
AnySelect = Select[*tuple[Any, ...]]


def _cursor_field(format_name: str, description: str) -> Any:
    return Field(
        max_length=CURSOR_MAX_LENGTH, json_schema_extra={"format": format_name}, description=description
    )


# `format: cursor` tells clients (and API fuzzers) that only a `next_cursor` this API
# returned is valid: an opaque value no schema can describe further.
CursorParam = Annotated[str, _cursor_field("cursor", "The `next_cursor` of the previous page, unchanged.")]
# A list keyed on a number of its own (an agent's versions) has cursors of another kind,
# `format: version-cursor`: a `cursor` from a (time, id) list is not one of them.
VersionCursorParam = Annotated[
    str,
    _cursor_field(
        "version-cursor",
        "The `next_cursor` of the previous page of this list, unchanged (a position among "
        "versions; cursors of other lists are refused).",
    ),
]


class InvalidCursor(InvalidInput):
    type_slug = "invalid-cursor"
    title = "Invalid cursor"


def encode_cursor(position: dict[str, Any]) -> str:
    raw = json.dumps(position, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> dict[str, Any]:
    """Decode a cursor from encode_cursor; anything else is a 422 problem."""
    if not cursor or len(cursor) > CURSOR_MAX_LENGTH:
        raise InvalidCursor("The cursor is not one this API returned.")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        position = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise InvalidCursor("The cursor is not one this API returned.") from exc
    if not isinstance(position, dict):
        raise InvalidCursor("The cursor is not one this API returned.")
    return position


def decode_position(cursor: str) -> tuple[datetime, uuid.UUID]:
    position = decode_cursor(cursor)
    try:
        moment = datetime.fromisoformat(str(position["t"]))
        after = uuid.UUID(str(position["id"]))
    except (KeyError, ValueError) as exc:
        raise InvalidCursor("The cursor is not one this API returned.") from exc
    if moment.tzinfo is None:
        raise InvalidCursor("The cursor is not one this API returned.")
    return moment, after


def _keyset_statement(
    statement: AnySelect,
    time_column: InstrumentedAttribute[datetime],
    id_column: InstrumentedAttribute[uuid.UUID],
    *,
    limit: int,
    cursor: str | None,
    newest_first: bool,
) -> AnySelect:
    if cursor:
        moment, after = decode_position(cursor)
        earlier = time_column < moment if newest_first else time_column > moment
        tie = id_column < after if newest_first else id_column > after
        statement = statement.where(or_(earlier, and_(time_column == moment, tie)))
    order = (time_column.desc(), id_column.desc()) if newest_first else (time_column.asc(), id_column.asc())
    return statement.order_by(*order).limit(limit + 1)


def _cut(
    rows: list[T], limit: int, position: Callable[[T], tuple[datetime, uuid.UUID]]
) -> tuple[list[T], str | None]:
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, position_cursor(*position(rows[-1]))


def position_cursor(moment: datetime, last_id: uuid.UUID) -> str:
    """The cursor that resumes a (time, id) list after this position."""
    return encode_cursor({"t": moment.isoformat(), "id": str(last_id)})


async def keyset_page(
    session: AsyncSession,
    statement: AnySelect,
    time_column: InstrumentedAttribute[datetime],
    id_column: InstrumentedAttribute[uuid.UUID],
    *,
    limit: int,
    cursor: str | None,
    newest_first: bool = True,
    parameters: Mapping[str, Any] | None = None,
) -> tuple[list[Any], str | None]:
    """One page of `statement` (ORM objects) keyed on (time, id); the cursor resumes after
    its last row.

    Keyset pagination stays fast and stable on large tables (no OFFSET) and never skips or
    repeats a row when others are inserted meanwhile.
    """
    page = _keyset_statement(
        statement, time_column, id_column, limit=limit, cursor=cursor, newest_first=newest_first
    )
    rows = list((await session.scalars(page, parameters)).all())
    return _cut(rows, limit, lambda last: (getattr(last, time_column.key), getattr(last, id_column.key)))


async def keyset_rows(
    session: AsyncSession,
    statement: AnySelect,
    time_column: InstrumentedAttribute[datetime],
    id_column: InstrumentedAttribute[uuid.UUID],
    *,
    limit: int,
    cursor: str | None,
    newest_first: bool = True,
    parameters: Mapping[str, Any] | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Like keyset_page, for a statement that selects columns (the two keys among them):
    each row a dict by column name, for lists that only serialise what they read (no ORM
    object, identity map or change tracking per row; a dict validates fastest)."""
    page = _keyset_statement(
        statement, time_column, id_column, limit=limit, cursor=cursor, newest_first=newest_first
    )
    result = await session.execute(page, parameters)
    names = tuple(result.keys())
    rows = [dict(zip(names, row, strict=True)) for row in result]
    return _cut(rows, limit, lambda last: (last[time_column.key], last[id_column.key]))
