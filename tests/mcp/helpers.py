"""Calls on /api/orgs/{org_id}/mcp-servers shared by the MCP tests, and raw reads of what the
product stored."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import text

from tests.mcp.conftest import McpTestServer


def servers_path(org_id: str, server_id: str | None = None, tail: str = "") -> str:
    path = f"/api/orgs/{org_id}/mcp-servers"
    return f"{path}/{server_id}{tail}" if server_id else path


def body_for(server: McpTestServer, name: str = "calc", path: str = "/mcp", **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "url": server.url(path),
        "headers": {server.header_name: server.header_value},
        **fields,
    }


async def register(
    http: httpx.AsyncClient, org_id: str, headers: dict[str, str], body: dict[str, Any]
) -> dict[str, Any]:
    response = await http.post(servers_path(org_id), json=body, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def table_text(app: FastAPI, table: str) -> str:
    """Every row of `table` as text, as the database returns it."""
    async with app.state.engine.connect() as connection:
        rows = (await connection.execute(text(f"SELECT * FROM {table}"))).all()  # noqa: S608 (a fixed name)
    return repr([dict(row._mapping) for row in rows])
