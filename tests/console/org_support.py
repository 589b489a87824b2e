"""Helpers of the audit and organization console tests: one cookie jar per signed-in user
(through the ASGI app), acting in a team."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from html.parser import HTMLParser

import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from agentkeep.config import Settings
from agentkeep.rbac.permissions import Role
from agentkeep.security.secretbox import generate_key
from tests.console.pages import form_token, sign_in
from tests.orgs.helpers import Team
from tests.support.databases import REDIS_URL

ENCRYPTION_KEY = generate_key()
SECRET_FIELD = re.compile(r'id="new-secret" class="secret-value" readonly value="([^"]+)"')


@dataclass
class ConsoleUser:
    http: httpx.AsyncClient
    token: str  # the session's CSRF token

    async def post(self, path: str, data: Mapping[str, object] | None = None) -> httpx.Response:
        return await self.http.post(path, data={"csrf_token": self.token, **(data or {})})


@asynccontextmanager
async def app_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The `client` of tests/conftest.py, except that each request gets a state of its own,
    as ASGI servers give it (uvicorn copies the lifespan state per request): the test
    lifespan manager hands every request one shared dict, where what the console keeps per
    request (the cookies to set) would leak from one user's request into the next."""

    async def per_request_state(scope: Scope, receive: Receive, send: Send) -> None:
        await app({**scope, "state": {}}, receive, send)

    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=per_request_state)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


@asynccontextmanager
async def console_user(client: httpx.AsyncClient, team: Team, role: Role) -> AsyncIterator[ConsoleUser]:
    """`role`'s user of `team`, signed in to the console in a cookie jar of its own and
    switched to the team (sign-in acts in the personal organization)."""
    async with httpx.AsyncClient(transport=client._transport, base_url=client.base_url) as http:
        await sign_in(http, team.users[role])
        home = await http.get("/")
        switched = await http.post(
            "/account/org", data={"org": team.org_id, "csrf_token": form_token(home.text)}
        )
        assert switched.status_code == 303, switched.text
        page = await http.get("/")
        assert page.status_code == 200
        yield ConsoleUser(http, form_token(page.text))


def team_settings(backend: str, database_url: str, make_settings: Callable[..., Settings]) -> Settings:
    """Settings of these tests (each test module's `settings` fixture): a team's users all
    sign in from one address, and providers and webhooks hold secrets."""
    return make_settings(
        database_url=database_url,
        redis_url=REDIS_URL if backend == "postgres" else None,
        rate_limit_auth="1000/minute",
        secrets_encryption_keys=ENCRYPTION_KEY,
    )


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.inline_scripts = 0
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "script" and not dict(attrs).get("src"):
            self.inline_scripts += 1
        if any(name.startswith("on") for name, _ in attrs):
            self.tags.append(f"{tag}[event handler]")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def read_html(page: str) -> _Reader:
    """What a browser's parser makes of a page: its elements and its text (stdlib parser)."""
    reader = _Reader()
    reader.feed(page)
    return reader
