"""Sign in, switch organization and sign out in a real Chromium against a real server."""

from __future__ import annotations

import re

from playwright.async_api import expect

from agentkeep.rbac.permissions import Role
from tests.console.conftest import Console


async def test_sign_in_shows_the_team_and_sign_out_ends_the_session(console: Console) -> None:
    page = await console.page_as(Role.MEMBER)
    await expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, mia-acme")
    await expect(page.locator("main")).to_contain_text("You act in Acme as member")
    nav = page.get_by_role("navigation", name="Main")
    await expect(nav.get_by_role("link", name="Agents")).to_be_visible()
    await page.get_by_role("button", name="Sign out").click()
    await expect(page).to_have_url(re.compile(r"/login$"))
    await page.goto("/")
    await expect(page).to_have_url(re.compile(r"/login\?next=%2F$"))


async def test_a_wrong_password_is_refused_without_a_session(console: Console) -> None:
    console.expect_status(401)
    page = await console.new_page()
    await page.goto("/login")
    await page.get_by_label("Username or email").fill("mia-acme")
    await page.get_by_label("Password").fill("not the password at all")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Invalid credentials")
    await page.goto("/")
    await expect(page).to_have_url(re.compile(r"/login"))


async def test_the_fixture_catches_a_csp_violation(console: Console) -> None:
    """The guard every browser test relies on: a blocked load is reported, and would fail it."""
    page = await console.new_page()
    await page.goto("/login")
    await page.evaluate(
        "() => { const s = document.createElement('script'); s.textContent = 'window.x = 1';"
        " document.body.appendChild(s); }"
    )
    await page.wait_for_timeout(200)
    assert any("CSP violation: script-src" in problem for problem in console.problems), console.problems
    assert await page.evaluate("() => window.x") is None  # the inline script did not run
    console.problems.clear()
