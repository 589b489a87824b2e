"""Keep the garbage collector off the startup heap of a long-running process.

A serving process holds a few hundred thousand long-lived objects once it has imported
FastAPI, SQLAlchemy, pydantic-ai and its model clients. CPython's oldest generation scans
all of them on every full collection, which under load ran several times a second: about a
tenth of the CPU of a busy `serve` process, in pauses that showed as p99 latency.
`gc.freeze()` once startup is complete moves them to a permanent generation that
collections skip; everything allocated afterwards is collected as usual.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Awaitable

import structlog

logger = structlog.get_logger("agentkeep.heap")


async def freeze_after(ready: Awaitable[None]) -> None:
    """Once `ready` (the last lazy import of startup) is done, freeze what is alive."""
    with contextlib.suppress(Exception):  # a failed import is reported where it happened
        await ready
    gc.collect()
    gc.freeze()
    logger.debug("startup_heap_frozen", objects=gc.get_freeze_count())
