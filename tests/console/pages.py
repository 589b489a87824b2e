"""Helpers for console tests through the ASGI app (no browser): forms, tokens, sign-in."""

from __future__ import annotations

import re

import httpx

from tests.auth.helpers import PASSWORD

CSRF_FIELD = re.compile(r'name="csrf_token" value="([0-9a-f]*)"')
# The header htmx sends, as base.html writes it into hx-headers (HTML-escaped JSON).
CSRF_HEADER = re.compile(r"hx-headers='\{&#34;X-CSRF-Token&#34;: &#34;([0-9a-f]*)&#34;\}'")


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
