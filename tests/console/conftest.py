"""Shared fixtures of the console tests: a real `agentkeep serve`, a team with one user per
role, Debian's Chromium driven by Playwright, and pages signed in as a role.

For browser tests (one server and one browser per module, a fresh context per test):

    def test_something(console: Console) -> None:
        page = console.page_as(Role.VIEWER)     # signed in through the sign-in form
        page.goto("/agents")                     # relative to the server's URL

Every page a test opens fails the test on any browser console error, uncaught page error
or Content-Security-Policy violation (checked when the test ends).

Screenshots for the README: with AGENTKEEP_CONSOLE_SCREENSHOTS=<directory>, `await console.screenshot(page,
name)` writes `<directory>/<name>.png` (docs/console.md); otherwise it does nothing.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Page, async_playwright

from agentkeep.config import Settings
from agentkeep.rbac.permissions import Role
from tests.auth.helpers import PASSWORD
from tests.orgs.helpers import Team, make_team
from tests.support.databases import REDIS_URL
from tests.support.peers import require_binary
from tests.support.server import Server, running_server

SCREENSHOTS_ENV = "AGENTKEEP_CONSOLE_SCREENSHOTS"
# Reported to the page's console by the init script below, whatever the browser itself logs.
CSP_VIOLATION = "CSP violation"
WATCH_CSP = (
    "document.addEventListener('securitypolicyviolation', e => "
    f"console.error('{CSP_VIOLATION}: ' + e.violatedDirective + ' ' + e.blockedURI));"
)
# Generous: sign-in hashes a password and the host is shared.
TIMEOUT_MS = 30_000
SERVER_ENV = {
    # Every test signs in through the form, from the same address.
    "RATE_LIMIT_AUTH": "100000/minute",
    "RATE_LIMIT_LOGIN_FAILURES": "100000/minute",
    "ALLOW_REGISTRATION": "true",
}


@pytest.fixture
def settings(backend: str, database_url: str, make_settings: Callable[..., Settings]) -> Settings:
    """The in-process app of the ASGI tests: many sign-ins from one address; runs executed
    inside the app on both databases (no worker process)."""
    redis_url = REDIS_URL if backend == "postgres" else None
    return make_settings(
        database_url=database_url,
        redis_url=redis_url,
        rate_limit_auth="1000/minute",
        run_execution="inprocess",
    )


@pytest.fixture(scope="module")
def console_server() -> Iterator[Server]:
    with running_server(SERVER_ENV) as server:
        yield server


@pytest.fixture(scope="module")
async def console_team(console_server: Server) -> Team:
    """Team `acme`: olivia (owner), adam-acme (admin), mia-acme (member), vic-acme (viewer),
    aude-acme (auditor), all with tests.auth.helpers.PASSWORD; `team.tokens` are API tokens."""
    async with httpx.AsyncClient(base_url=console_server.base_url, timeout=60) as http:
        return await make_team(http, slug="acme", owner="olivia")


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    executable = require_binary("chromium")
    # Root (a CI container) cannot use Chromium's sandbox.
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=executable, args=args)
        yield launched
        await launched.close()


@dataclass
class Console:
    browser: Browser
    server: Server
    team: Team
    problems: list[str] = field(default_factory=list)
    expected_statuses: set[int] = field(default_factory=set)
    contexts: list[BrowserContext] = field(default_factory=list)

    async def new_page(self, viewport: dict[str, int] | None = None) -> Page:
        """A fresh, signed-out page whose errors are collected."""
        context = await self.browser.new_context(
            base_url=self.server.base_url,
            viewport=viewport or {"width": 1280, "height": 800},  # type: ignore[arg-type]
        )
        context.set_default_timeout(TIMEOUT_MS)
        await context.add_init_script(WATCH_CSP)
        self.contexts.append(context)
        page = await context.new_page()
        page.on("console", self._console_message)
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        return page

    def expect_status(self, status: int) -> None:
        """A page answered with this error status on purpose: the browser's own log line
        about it ("Failed to load resource: ... status of 401") is no problem."""
        self.expected_statuses.add(status)

    def _console_message(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        if any(
            f"the server responded with a status of {status} " in message.text
            for status in self.expected_statuses
        ):
            return
        self.problems.append(f"console error: {message.text} at {message.location}")

    async def sign_in(self, page: Page, username: str, password: str = PASSWORD) -> None:
        await page.goto("/login")
        await page.get_by_label("Username or email").fill(username)
        await page.get_by_label("Password").fill(password)
        await page.get_by_role("button", name="Sign in").click()
        await page.wait_for_url(lambda url: "/login" not in url)

    async def page_as(self, role: Role, viewport: dict[str, int] | None = None) -> Page:
        """A page signed in as the team's user of `role`, acting in the team."""
        page = await self.new_page(viewport)
        await self.sign_in(page, self.team.users[role])
        await page.goto("/")
        # Sign-in acts in the personal organization; the team is one switch away.
        await page.get_by_label("Organization").select_option(self.team.org_id)
        await page.get_by_role("button", name="Switch").click()
        await page.wait_for_load_state()
        return page

    async def screenshot(self, page: Page, name: str) -> None:
        directory = os.environ.get(SCREENSHOTS_ENV)
        if directory:
            await page.screenshot(path=str(Path(directory) / f"{name}.png"), full_page=True)

    async def close(self) -> None:
        for context in self.contexts:
            await context.close()


@pytest.fixture
async def console(browser: Browser, console_server: Server, console_team: Team) -> AsyncIterator[Console]:
    opened = Console(browser, console_server, console_team)
    try:
        yield opened
        await opened.close()
    finally:
        # Checked after the pages closed: a late error (an SSE swap, a stray request) counts.
        assert opened.problems == [], "\n".join(opened.problems)
