"""Answers serialised once.

A route that returns a model instance has FastAPI validate it against `response_model`
again before serialising it. A hot route that already built its model from validated data
returns `model_response(...)` instead (keeping `response_model=` on the route, which is
what the OpenAPI document shows): the same JSON, from the model's own serializer, with no
second validation. Headers set on an injected `Response` are not carried over to it.
"""

from __future__ import annotations

from fastapi import Response
from pydantic import BaseModel

JSON = "application/json"


def model_response(model: BaseModel, status_code: int = 200) -> Response:
    """`model` as JSON, serialised as FastAPI serialises a response model (by alias)."""
    return Response(model.__pydantic_serializer__.to_json(model, by_alias=True), status_code, media_type=JSON)
