"""Lists read straight into their response models: the columns a model shows, as rows.

A list endpoint that only serialises what it reads selects these columns and validates each
row mapping into the response model: no ORM object, identity map entry or change tracking
is built for a row that is thrown away once serialised.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from sqlalchemy.orm import InstrumentedAttribute


def columns_for(model: type[Any], schema: type[BaseModel]) -> tuple[InstrumentedAttribute[Any], ...]:
    """`model`'s attributes named by `schema`'s fields (or by their validation alias), in
    the schema's order. A field the model lacks fails here, at import, not per request."""
    names = [
        field.validation_alias if isinstance(field.validation_alias, str) else name
        for name, field in schema.model_fields.items()
    ]
    return tuple(getattr(model, name) for name in names)
