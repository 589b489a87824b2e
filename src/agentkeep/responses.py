"""Answers serialised without validation.

A route that returns a model instance has FastAPI validate it against `response_model`
(again, if the route built it by validating) before serialising it. A hot list route
returns a `RowPage` response instead, keeping `response_model=` on the route (what the
OpenAPI document shows): the same JSON, without either validation. Headers set on an
injected `Response` are not carried over to it.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Response
from pydantic import BaseModel, TypeAdapter
from typing_extensions import TypedDict

JSON = "application/json"


class RowPage:
    """A page of rows (dicts by field name, db/rows.py) serialised as a `{"items": [item...],
    "next_cursor": ...}` page of `item` models, without validating each row into a model.

    The rows come from columns of the item's own field types, so validating them would only
    copy them. The serializer is built from the item's fields, so it writes what the model's
    would (tests/agents/test_read_path.py compares the two); an item model whose JSON is not
    just its fields' (aliases, serializers) is refused here, at import.
    """

    def __init__(self, item: type[BaseModel]) -> None:
        decorators = item.__pydantic_decorators__
        if decorators.field_serializers or decorators.model_serializers or decorators.computed_fields:
            raise TypeError(f"{item.__name__} customises its serialisation")
        if any(field.serialization_alias or field.alias for field in item.model_fields.values()):
            raise TypeError(f"{item.__name__} has aliases")
        fields = {name: field.annotation for name, field in item.model_fields.items()}
        row = TypedDict(f"{item.__name__}Row", fields)  # type: ignore[misc]
        self._items: TypeAdapter[Any] = TypeAdapter(list[row])

    def json(self, rows: list[dict[str, Any]], next_cursor: str | None) -> bytes:
        cursor = json.dumps(next_cursor).encode()
        return b"".join((b'{"items":', self._items.dump_json(rows), b',"next_cursor":', cursor, b"}"))

    def response(self, rows: list[dict[str, Any]], next_cursor: str | None) -> Response:
        return Response(self.json(rows, next_cursor), media_type=JSON)
