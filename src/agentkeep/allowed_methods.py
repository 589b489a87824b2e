"""The methods a path supports, for the `Allow` header of a 405 (RFC 9110, 15.5.6).

Starlette answers 405 with the methods of the first route whose path matched, but one path
is often served by several routes (GET, PATCH and DELETE of /api/agents/{agent_id}): the
header must name every one of them.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from starlette.routing import compile_path


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """Every method some route of `app` serves at `path`, sorted."""
    methods: set[str] = set()
    for context in iter_route_contexts(app.routes):
        route_methods = context.methods
        if not route_methods:
            continue
        pattern, _, _ = compile_path(str(context.path))
        if pattern.match(path):
            methods.update(route_methods)
    return sorted(methods)
