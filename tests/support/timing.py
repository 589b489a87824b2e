"""How much longer than the product's own bound a test lets an answer take.

A bound in a test is the configured timeout it exercises plus this margin: on a loaded 2-core
host (parallel test workers, their servers and databases) an answer can wait seconds for the
CPU after the product has already decided it.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable

SCHEDULING_MARGIN_SECONDS = 3.0


async def eventually(check: Callable[[], Awaitable[bool]], within: float, every: float = 0.05) -> bool:
    """Whether `check` comes true within `within` seconds (plus the scheduling margin)."""
    deadline = time.monotonic() + within + SCHEDULING_MARGIN_SECONDS
    while True:
        if await check():
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(every)
