"""The audit and organization pages in a real Chromium against a real server: create and
revoke an API key (its secret shown once), change a member's role, and find all of it (and
the sign-ins) in the audit log; a viewer sees no controls and is refused when posting
anyway. Every page fails the test on a console error or CSP violation (conftest.py)."""

from __future__ import annotations

import re

from playwright.async_api import expect

from agentkeep.rbac.permissions import Role
from tests.console.conftest import Console

KEY_NAME = "ci-browser-key"


async def test_an_admin_creates_and_revokes_a_key_changes_a_role_and_the_audit_log_shows_it(
    console: Console,
) -> None:
    page = await console.page_as(Role.ADMIN)
    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Organization").click()
    await expect(page.get_by_role("heading", name="Members and roles")).to_be_visible()

    # API key: created, its secret shown once.
    await page.get_by_role("navigation", name="Organization").get_by_role("link", name="API keys").click()
    await page.get_by_label("Name").fill(KEY_NAME)
    await page.get_by_role("button", name="Create key").click()
    secret_box = page.get_by_label("Secret")
    await expect(secret_box).to_have_value(re.compile(r"^ak_"))
    secret = await secret_box.input_value()
    await console.screenshot(page, "console-api-key-created")
    await page.goto("/org/api-keys")
    await expect(page.get_by_label("Secret")).to_have_count(0)
    assert secret not in await page.content()
    row = page.locator("tr", has_text=KEY_NAME)
    await expect(row).to_contain_text("active")
    await row.get_by_role("button", name=f"Revoke {KEY_NAME}").click()
    await expect(page.get_by_role("status")).to_contain_text("revoked")
    await expect(page.locator("tr", has_text=KEY_NAME)).to_contain_text("revoked")

    # A member's role.
    await page.goto("/org/members")
    member = page.locator('tr[data-member="mia-acme"]')
    await member.get_by_label("Role of mia-acme", exact=True).select_option("viewer")
    await member.get_by_role("button", name="Change role of mia-acme").click()
    await expect(page.get_by_role("status")).to_have_text("The role was changed.")
    await expect(page.locator('tr[data-member="mia-acme"] td').nth(2)).to_have_text("viewer")

    # The audit log holds all of it, and the sign-ins of part 1's pages.
    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit").click()
    await expect(page.locator("#chain-status [data-chain]")).to_have_attribute("data-chain", "ok")
    table = page.locator("table.audit tbody")
    for action in ("api_key_created", "api_key_revoked", "role_changed", "login_success"):
        await expect(table.get_by_text(action, exact=True).first).to_be_visible()
    await page.get_by_label("Action").select_option("role_changed")
    await page.get_by_label("Actor").fill("adam-acme")
    await page.get_by_role("button", name="Filter").click()
    await expect(table.locator("tr")).to_have_count(1)
    await expect(table).to_contain_text('"to": "viewer"')
    await console.screenshot(page, "console-audit")


async def test_a_viewer_sees_no_controls_and_is_refused_when_posting_anyway(console: Console) -> None:
    console.expect_status(403)
    # At phone width: the pages fit it (wide tables scroll inside their own box).
    page = await console.page_as(Role.VIEWER, viewport={"width": 390, "height": 844})
    nav = page.get_by_role("navigation", name="Main")
    await expect(nav.get_by_role("link", name="Audit")).to_have_count(0)
    await nav.get_by_role("link", name="Organization").click()
    await expect(page.get_by_role("heading", name="Members and roles")).to_be_visible()
    await expect(page.get_by_role("button", name=re.compile("Add member|Change role|Remove"))).to_have_count(
        0
    )
    sections = page.get_by_role("navigation", name="Organization")
    await expect(sections.get_by_role("link", name="API keys")).to_have_count(0)
    await sections.get_by_role("link", name="Usage and budget").click()
    await expect(page.get_by_role("img", name=re.compile("Tokens per agent"))).to_be_visible()
    await console.screenshot(page, "console-usage")
    for path in ("/org/usage", "/org/members"):
        await page.goto(path)
        assert await page.evaluate("() => document.documentElement.scrollWidth") <= 390, path
    await expect(page.get_by_role("button", name="Save budget")).to_have_count(0)

    # Posting anyway, with the session's own CSRF token: the permission refuses it.
    statuses = await page.evaluate(
        """async () => {
            const token = JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRF-Token'];
            const post = (path, body) => fetch(path, {method: 'POST', headers: {'X-CSRF-Token': token},
                body: new URLSearchParams(body)}).then(async r => [r.status, await r.text()]);
            return [await post('/org/members', {user: 'olivia', role: 'viewer'}),
                    await post('/org/api-keys', {name: 'sneaky', scopes: 'agents:read'})];
        }"""
    )
    assert [status for status, _ in statuses] == [403, 403]
    assert "members:manage" in statuses[0][1]
    assert "apikeys:manage" in statuses[1][1]
    await page.goto("/org/api-keys")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Permission denied")
    await expect(page.locator("main")).to_contain_text("'apikeys:manage'")
