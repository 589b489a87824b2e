"""What a request sends to PostgreSQL. docs/ARCHITECTURE.md ("The hot path"): a returning
caller's `GET /api/agents` is one statement, the list's SELECT, with no BEGIN or COMMIT
around it and none for authentication; a write still runs in one transaction."""

from __future__ import annotations

import asyncio
import itertools
import weakref
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event

from agentkeep.auth.principal_cache import PrincipalCache
from tests.agents.helpers import AGENTS, agent_body, create_agent, owner
from tests.orgs.helpers import create_key, key_header

pytestmark = pytest.mark.parametrize("backend", ["postgres"], indirect=True)

# The statements sent on behalf of the code running where it is set.
_CAPTURED: ContextVar[list[str] | None] = ContextVar("captured_statements", default=None)
# asyncpg's liveness ping, sent before a connection idle for 5 s is handed out again.
PING = ";"
# A steady-state request is asked for again when the one measured was not one (a principal
# cache entry expired, an idle connection pinged): the host may stall a test for seconds.
ATTEMPTS = 5


class WireLog:
    """Every statement the app sends to PostgreSQL while `capture` runs a request.

    SQLAlchemy's cursor events see the statements it executes (as prepared statements,
    which asyncpg does not log); asyncpg sends transaction control (BEGIN, COMMIT, ROLLBACK)
    and the pool's ping itself, outside them, and a query sent through the driver directly
    (db/rows.py) passes no cursor event either: those are read from asyncpg's own query log.
    asyncpg reports a query once it is done, so the list is not in the order sent.
    Statements of the app's background tasks (the audit sealer, the sweeps) are left out:
    only the captured request's count.
    """

    def __init__(self, app: FastAPI) -> None:
        engine = app.state.engine.sync_engine
        self._logging: weakref.WeakSet[Any] = weakref.WeakSet()
        event.listen(engine, "before_cursor_execute", self._executed)
        event.listen(engine, "checkout", self._checked_out)

    def _checked_out(self, dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        driver = dbapi_connection.driver_connection
        if driver not in self._logging:
            driver.add_query_logger(self._logged)
            self._logging.add(driver)

    @staticmethod
    def _executed(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        captured = _CAPTURED.get()
        if captured is not None:
            captured.append(statement)

    @staticmethod
    def _logged(record: Any) -> None:
        captured = _CAPTURED.get()  # asyncpg calls back in the context of the query's sender
        if captured is not None:
            captured.append(record.query)

    async def capture(self, request: Awaitable[httpx.Response]) -> tuple[httpx.Response, list[str]]:
        captured: list[str] = []
        token = _CAPTURED.set(captured)
        try:
            response = await request
        finally:
            _CAPTURED.reset(token)
        await asyncio.sleep(0)  # asyncpg's log callbacks are scheduled, not called
        return response, captured


async def steady_state(
    wire: WireLog, call: Callable[[], Awaitable[httpx.Response]], cache: PrincipalCache[Any]
) -> list[str]:
    """The statements of `call` made by a caller its instance remembers, on a connection in
    use: the steady state of a client making request after request."""
    for _ in range(ATTEMPTS):
        warm = await call()  # the caller is remembered, the connections used, from now on
        assert warm.is_success, warm.text
        hits = cache.hits
        response, statements = await wire.capture(call())
        assert response.is_success, response.text
        if cache.hits == hits + 1 and PING not in statements:
            return statements
    raise AssertionError(f"no steady-state request in {ATTEMPTS} attempts")


@pytest.mark.parametrize("credential", ["access token", "API key"])
async def test_a_returning_callers_list_of_agents_is_one_statement(
    app: FastAPI, client: httpx.AsyncClient, credential: str
) -> None:
    headers = await owner(client)
    for index in range(3):
        await create_agent(client, headers, name=f"agent-{index}")
    cache = app.state.session_cache
    if credential == "API key":
        headers = key_header(await create_key(client, headers, ["agents:read"]))
        cache = app.state.key_cache
    wire = WireLog(app)
    statements = await steady_state(wire, lambda: client.get(AGENTS, headers=headers), cache)
    assert len(statements) == 1, statements
    assert statements[0].startswith("SELECT agents.")
    assert "FROM agents" in statements[0]


async def test_a_write_still_runs_in_one_transaction(app: FastAPI, client: httpx.AsyncClient) -> None:
    headers = await owner(client)
    names = itertools.count()
    wire = WireLog(app)

    def create() -> Awaitable[httpx.Response]:
        return client.post(AGENTS, json=agent_body(name=f"agent-{next(names)}"), headers=headers)

    statements = await steady_state(wire, create, app.state.session_cache)
    control = sorted(
        s.split()[0].rstrip(";") for s in statements if s.startswith(("BEGIN", "COMMIT", "ROLLBACK"))
    )
    assert control == ["BEGIN", "COMMIT"], statements
    assert any(s.startswith("INSERT INTO agents") for s in statements), statements
