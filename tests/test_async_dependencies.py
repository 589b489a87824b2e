"""Every dependency is `async def`: FastAPI runs a plain `def` dependency in its thread
pool, one hop per dependency per request, which on the hot paths (authentication, the
per-request session, services) cost more CPU than the work itself."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import iter_route_contexts

from agentkeep.app import create_app
from agentkeep.config import Settings
from agentkeep.rbac.dependencies import dependency_calls


def _is_async(call: Callable[..., Any]) -> bool:
    target = call if inspect.isfunction(call) or inspect.ismethod(call) else getattr(call, "__call__", call)  # noqa: B004
    return inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target)


def sync_dependencies(app: FastAPI) -> set[str]:
    found: set[str] = set()
    for context in iter_route_contexts(app.routes):
        dependant = getattr(context, "dependant", None)
        if isinstance(dependant, Dependant):
            found |= {
                f"{call.__module__}.{getattr(call, '__qualname__', type(call).__name__)}"
                for call in dependency_calls(dependant)
                if not _is_async(call)
            }
    return found


def test_no_route_depends_on_a_synchronous_function(make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings(api_docs_enabled=True))
    assert sync_dependencies(app) == set()


def test_a_synchronous_dependency_is_reported(make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings())

    def blocking() -> int:
        return 1

    @app.get("/sync-probe")
    # Depends as a default: a local function cannot be resolved from an Annotated string.
    async def probe(value: int = Depends(blocking)) -> int:
        return value

    assert sync_dependencies(app) == {f"{__name__}.{blocking.__qualname__}"}
