"""The console in a real Chromium against a real `agentkeep serve`: create an agent with the
`test` model, chat three turns streamed live, approve a tool call, read the run's events;
a viewer's view and refusals; a hostile agent name; a cross-site form post. Every page fails
its test on a console error, page error or CSP violation (conftest.py)."""

from __future__ import annotations

import re

import httpx
from playwright.async_api import Page, expect

from agentkeep.rbac.permissions import Role
from tests.console.conftest import Console

HOSTILE = "\"><img src=x onerror=\"document.title='pwned'\"><script>document.title='pwned'</script>"


async def create_agent(page: Page, name: str, tools: str = "") -> str:
    """Through the form; answers the agent page's URL."""
    await page.goto("/agents")
    await page.get_by_role("link", name="New agent").click()
    await page.get_by_label("Name", exact=True).fill(name)
    await page.get_by_label("Model").fill("test")
    await page.get_by_label("Tools (JSON)").fill(tools)
    await page.get_by_role("button", name="Create agent").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(name)
    return page.url


async def say(page: Page, text: str) -> None:
    """Send a turn and wait until its run ended, as streamed into the conversation."""
    turns = page.locator("#turns .message.assistant.live")
    before = await turns.count()
    await page.get_by_label("Message").fill(text)
    await page.get_by_role("button", name="Send").click()
    await expect(turns).to_have_count(before + 1)
    await expect(turns.last.locator('.event[data-kind="status"]').last).to_contain_text("completed")


async def test_an_agent_is_created_chatted_with_live_and_its_tool_call_approved(console: Console) -> None:
    page = await console.page_as(Role.OWNER)
    await create_agent(page, "helper", '[{"name": "calculator", "approval": "always"}]')
    await page.locator("main").get_by_role("link", name="Chat", exact=True).click()
    await page.get_by_label("Title").fill("Arithmetic")
    await page.get_by_role("button", name="New thread").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Arithmetic")

    await say(page, "hello there")
    live = page.locator("#turns .message.assistant.live")
    await expect(live.nth(0).locator('.event[data-kind="output"]')).to_contain_text("echo: hello there")
    await say(page, "and again")
    await expect(live.nth(1).locator('.event[data-kind="output"]')).to_contain_text("echo: and again")

    # Third turn: the calculator needs approval; the run pauses until a person decides.
    await page.get_by_label("Message").fill("what is 2+3")
    await page.get_by_role("button", name="Send").click()
    third = live.nth(2)
    await expect(third.locator('.event[data-kind="approval_requested"]')).to_contain_text("calculator")
    await console.screenshot(page, "console-chat")
    await third.get_by_role("button", name="Approve").click()
    await expect(third.get_by_role("status")).to_have_text("Approved: the run resumes.")
    await expect(third.locator('.event[data-kind="output"]')).to_contain_text("calculator: 5")
    await expect(third.locator('.event[data-kind="status"]').last).to_contain_text("completed")

    # The run's events, one click away.
    await third.get_by_role("link", name="run events").click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text("Run")
    events = page.locator("#events .event")
    kinds = [await event.get_attribute("data-kind") for event in await events.all()]
    assert "approval_requested" in kinds
    assert "approval_decided" in kinds
    assert kinds.index("approval_decided") < kinds.index("tool_result") < kinds.index("output")
    await expect(page.locator("dl.facts")).to_contain_text("completed")
    await console.screenshot(page, "console-run")

    # The conversation as stored: three turns, the answers included.
    await page.get_by_role("link", name=re.compile(r"turn 3")).click()
    await expect(page.locator("#turns")).to_contain_text("calculator: 5")


async def test_a_viewer_sees_no_create_buttons_and_is_refused_when_posting_anyway(console: Console) -> None:
    async with httpx.AsyncClient(base_url=console.server.base_url) as http:
        created = await http.post(
            "/api/agents", json={"name": "visible", "model": "test"}, headers=console.team.headers(Role.OWNER)
        )
        assert created.status_code == 201, created.text
    console.expect_status(403)
    page = await console.page_as(Role.VIEWER)
    await page.goto("/agents")
    await expect(page.get_by_role("link", name="visible")).to_be_visible()
    await expect(page.get_by_role("link", name="New agent")).to_have_count(0)
    await page.get_by_role("link", name="visible").click()
    main = page.locator("main")
    for name in ("Edit", "Archive", "Chat"):
        await expect(main.get_by_role("link", name=name, exact=True)).to_have_count(0)
        await expect(main.get_by_role("button", name=name, exact=True)).to_have_count(0)
    # Posting anyway, from the page with its own session and CSRF token: 403 naming the permission.
    token = await page.locator("input[name=csrf_token]").first.input_value()
    refused = await page.request.post(
        "/agents", form={"name": "sneaky", "model": "test", "approvers": "owner", "csrf_token": token}
    )
    assert refused.status == 403
    assert "agents:write" in await refused.text()
    await page.goto("/agents/new")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Permission denied")
    await expect(page.locator("main")).to_contain_text("agents:write")


async def test_a_hostile_agent_name_is_rendered_inert(console: Console) -> None:
    page = await console.page_as(Role.ADMIN)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    await create_agent(page, HOSTILE)
    title = await page.title()
    await page.goto("/agents")
    await expect(page.get_by_role("link", name=HOSTILE)).to_be_visible()
    assert await page.locator("main img").count() == 0
    assert await page.locator("main script").count() == 0
    # Shown as text, never run: a script or handler would have set the title to "pwned".
    assert title == f"{HOSTILE} · AgentKeep"
    assert await page.title() == "Agents · AgentKeep"
    assert dialogs == []


async def test_a_form_posted_from_another_site_is_refused(console: Console) -> None:
    console.expect_status(403)
    page = await console.page_as(Role.MEMBER)
    target = f"{console.server.base_url}/logout"
    evil = "http://evil.example/"
    await page.route(
        evil,
        lambda route: route.fulfill(
            content_type="text/html",
            body=f'<form method="post" action="{target}"><input name="csrf_token" value="guess"></form>'
            "<script>document.forms[0].submit()</script>",
        ),
    )
    await page.goto(evil)
    await expect(page.get_by_role("heading", level=1)).to_have_text("Request refused")
    # Still signed in: the session was not ended by the forged request.
    await page.goto("/")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, mia-acme")


async def test_the_console_works_at_phone_width(console: Console) -> None:
    page = await console.page_as(Role.MEMBER, viewport={"width": 375, "height": 740})
    await page.goto("/agents")
    width = await page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 375
    # Keyboard: the skip link comes first and moves focus to the content.
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
