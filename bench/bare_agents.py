"""The baseline for `agents_list.py`: a bare FastAPI + asyncpg endpoint returning the same
20 agent rows as `GET /api/agents`, with no authentication, rate limit, audit or middleware.

    DATABASE_URL=postgresql://... ORG_ID=<uuid> uvicorn bench.bare_agents:create_app --factory
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from fastapi import FastAPI, Request

QUERY = """
SELECT id, org_id, name, description, model, system_prompt, tools, limits, status, version,
       created_at, updated_at
FROM agents WHERE org_id = $1 AND archived_at IS NULL
ORDER BY created_at DESC, id DESC LIMIT 20
"""


def create_app() -> FastAPI:
    dsn = os.environ["DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://")
    org_id = os.environ["ORG_ID"]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = await asyncpg.create_pool(
            dsn, min_size=5, max_size=int(os.environ.get("POOL", "20"))
        )
        yield
        await app.state.pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/agents")
    async def agents(request: Request) -> dict[str, Any]:
        async with request.app.state.pool.acquire() as connection:
            rows = await connection.fetch(QUERY, org_id)
        return {"items": [dict(row) for row in rows], "next_cursor": None}

    return app
