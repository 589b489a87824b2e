"""Helpers for console tests through the ASGI app (no browser): forms, tokens, sign-in."""

from __future__ import annotations

import re

import httpx

from tests.auth.helpers import PASSWORD

CSRF_FIELD = re.compile(r'name="csrf_token" value="([0-9a-f]*)"')
# The header htmx sends, as base.html writes it into hx-headers (HTML-escaped JSON).
CSRF_HEADER = re.compile(r"""hx-headers='\{"X-CSRF-Token": "([0-9a-f]*)"\}'""")


def form_token(html: str) -> str:
    found = CSRF_FIELD.search(html)
    assert found is not None, "no csrf_token field on the page"
    return found.group(1)


async def sign_in(http: httpx.AsyncClient, username: str, password: str = PASSWORD) -> str:
    """Sign in through the console's form; answers the session's CSRF token."""
    page = await http.get("/login")
    assert page.status_code == 200, page.text
    answer = await http.post(
        "/login", data={"username": username, "password": password, "csrf_token": form_token(page.text)}
    )
    assert answer.status_code == 303, answer.text
    home = await http.get("/")
    assert home.status_code == 200, home.text
    return form_token(home.text)


async def switch_org(http: httpx.AsyncClient, token: str, org_id: str) -> str:
    """Act in `org_id` (the console's organization switch); answers the (same) CSRF token."""
    answer = await http.post("/account/org", data={"org": org_id, "csrf_token": token})
    assert answer.status_code == 303, answer.text
    return form_token((await http.get("/")).text)


def csrf_header(html: str) -> str:
    found = CSRF_HEADER.search(html)
    assert found is not None, "no hx-headers with the CSRF token on <body>"
    return found.group(1)
