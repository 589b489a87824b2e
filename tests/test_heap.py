"""A serving process freezes its startup heap out of garbage collection; tests' apps do not."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable

from asgi_lifespan import LifespanManager

from agentkeep.app import create_app
from agentkeep.config import Settings


async def test_serving_freezes_what_startup_allocated(
    make_settings: Callable[..., Settings], sqlite_url: str
) -> None:
    gc.unfreeze()
    app = create_app(make_settings(database_url=sqlite_url), freeze_heap=True)
    try:
        async with LifespanManager(app):
            for _ in range(200):
                if gc.get_freeze_count() > 0:
                    break
                await asyncio.sleep(0.05)
            assert gc.get_freeze_count() > 10_000  # the imported framework, not a handful
    finally:
        gc.unfreeze()


async def test_an_app_built_without_the_flag_leaves_the_collector_alone(
    make_settings: Callable[..., Settings], sqlite_url: str
) -> None:
    gc.unfreeze()
    async with LifespanManager(create_app(make_settings(database_url=sqlite_url))):
        await asyncio.sleep(0.3)
        assert gc.get_freeze_count() == 0
