"""Signing in to the console through a single sign-on provider, in Chromium: the sign-in
page's provider button, the provider's own login form (oidc-provider, a real OpenID
provider on loopback), back to the console signed in as the provisioned user."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from playwright.async_api import Browser, ConsoleMessage, Page

from tests.console.conftest import CSP_VIOLATION, SERVER_ENV, TIMEOUT_MS, WATCH_CSP
from tests.sso.peer import CLIENT_ID, OpenIdProvider, new_client_secret, running_provider
from tests.support.server import Server, running_server
from tests.support.throwaway import free_port

pytestmark = pytest.mark.slow

PROVIDER_PORT = free_port()
SECRET = new_client_secret()


@pytest.fixture(scope="module")
def sso_server() -> Iterator[Server]:
    providers = [
        {
            "name": "corp",
            "display_name": "Corp Identity",
            "issuer": f"http://127.0.0.1:{PROVIDER_PORT}",
            "client_id": CLIENT_ID,
            "client_secret_env": "CORP_OIDC_SECRET",
            "scopes": ["openid", "email", "profile", "groups"],
        }
    ]
    env = {
        **SERVER_ENV,
        "OIDC_PROVIDERS": json.dumps(providers),
        "CORP_OIDC_SECRET": SECRET,
        "OIDC_ALLOWED_NETWORKS": "127.0.0.1",
    }
    with running_server(env) as server:
        yield server


@pytest.fixture(scope="module")
def provider(sso_server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenIdProvider]:
    callback = f"{sso_server.base_url}/login/oidc/corp/callback"
    with running_provider(
        tmp_path_factory.mktemp("op"), [callback], port=PROVIDER_PORT, client_secret=SECRET
    ) as started:
        yield started


@pytest.fixture
async def page(browser: Browser, sso_server: Server) -> AsyncIterator[Page]:
    problems: list[str] = []
    context = await browser.new_context(base_url=sso_server.base_url)
    context.set_default_timeout(TIMEOUT_MS)
    await context.add_init_script(WATCH_CSP)

    def ours(message: ConsoleMessage) -> None:
        # The provider's pages are not ours to judge; the console's must be clean.
        if message.type == "error" and (
            message.location.get("url", "").startswith(sso_server.base_url) or CSP_VIOLATION in message.text
        ):
            problems.append(f"console error: {message.text} at {message.location}")

    opened = await context.new_page()
    opened.on("console", ours)
    opened.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    yield opened
    await context.close()
    assert problems == [], "\n".join(problems)


async def test_a_person_signs_in_to_the_console_through_the_provider(
    page: Page, sso_server: Server, provider: OpenIdProvider
) -> None:
    provider.add_user("olivia", email="olivia@example.com")

    await page.goto("/agents")  # signed out: the sign-in page, coming back here after
    await page.get_by_role("link", name="Sign in with Corp Identity").click()
    await page.wait_for_url(lambda url: url.startswith(provider.url))
    await page.locator("input[name=login]").fill("olivia")
    await page.locator("input[name=password]").fill("any password the provider accepts")
    await page.locator("button[type=submit]").click()

    await page.wait_for_url(f"{sso_server.base_url}/agents")
    await page.get_by_role("heading", name="Agents").wait_for()
    assert "olivia" in await page.locator("header").inner_text()
    # The session is an ordinary login session: the API answers its cookie's owner.
    cookies = {cookie["name"]: cookie for cookie in await page.context.cookies()}
    session_cookies = [cookie for name, cookie in cookies.items() if "access" in name]
    assert session_cookies
    assert all(cookie["httpOnly"] for cookie in session_cookies)
    assert not any("oidc" in name for name in cookies)  # the pending login is gone

    # Signing out revokes it; signing in again goes through the provider once more.
    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url(lambda url: "/login" in url)
    async with httpx.AsyncClient(base_url=sso_server.base_url) as client:
        providers = (await client.get("/auth/oidc/providers")).json()
    assert [entry["name"] for entry in providers] == ["corp"]
