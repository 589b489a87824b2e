"""The console's session, CSRF and CSP through the ASGI app (no browser): cookie attributes,
refusals, headers and escaping, against what docs/console.md and the standards say."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from agentkeep.app import create_app
from agentkeep.config import Settings
from tests.auth.helpers import PASSWORD, register
from tests.console.pages import form_token, sign_in

CONSOLE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def _set_cookies(response: httpx.Response) -> dict[str, str]:
    """Each Set-Cookie header by cookie name, as sent."""
    found = {}
    for header in response.headers.get_list("set-cookie"):
        name = header.split("=", 1)[0]
        found[name] = header
    return found


def _attributes(header: str) -> set[str]:
    return {part.strip().split("=")[0].lower() for part in header.split(";")[1:]}


async def test_pages_carry_the_console_csp_and_the_api_keeps_its_own(client: httpx.AsyncClient) -> None:
    page = await client.get("/login")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == CONSOLE_CSP
    assert "unsafe-inline" not in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"
    assert "x-agentkeep-console" not in page.headers
    api = await client.get("/health/live")
    assert api.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert "<script>" not in page.text.replace("<script src=", "")  # no inline script at all


async def test_sign_in_sets_http_only_strict_cookies_and_sign_out_revokes(client: httpx.AsyncClient) -> None:
    assert (await register(client, "carol")).status_code == 201
    login_page = await client.get("/login")
    answer = await client.post(
        "/login",
        data={
            "username": "carol",
            "password": PASSWORD,
            "csrf_token": form_token(login_page.text),
            "next": "/",
        },
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/"
    cookies = _set_cookies(answer)
    for name in ("agentkeep-access", "agentkeep-refresh"):
        attributes = _attributes(cookies[name])
        assert {"httponly", "samesite", "path"} <= attributes
        assert "samesite=strict" in cookies[name].lower()
        assert "path=/" in cookies[name].lower()
        # Plain http (development): no Secure, which a browser would refuse to store over http.
        assert "secure" not in attributes
    home = await client.get("/")
    assert home.status_code == 200
    assert "carol" in home.text
    old_access = client.cookies["agentkeep-access"]
    token = form_token(home.text)
    out = await client.post("/logout", data={"csrf_token": token})
    assert out.status_code == 303
    # The session is revoked: the old cookie no longer opens a page, nor the API.
    client.cookies.set("agentkeep-access", old_access)
    again = await client.get("/")
    assert again.status_code == 303
    assert again.headers["location"].startswith("/login")
    api = await client.get("/auth/me", headers={"Authorization": f"Bearer {old_access}"})
    assert api.status_code == 401


async def test_over_https_the_cookies_are_host_prefixed_and_secure(app: FastAPI) -> None:
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="https://console.test") as http:
            assert (await register(http, "dave")).status_code == 201
            page = await http.get("/login")
            assert "__Host-agentkeep-presession" in _set_cookies(page)
            answer = await http.post(
                "/login", data={"username": "dave", "password": PASSWORD, "csrf_token": form_token(page.text)}
            )
            assert answer.status_code == 303
            cookies = _set_cookies(answer)
            for name in ("__Host-agentkeep-access", "__Host-agentkeep-refresh"):
                # RFC 6265bis: __Host- requires Secure, Path=/ and no Domain.
                assert {"secure", "httponly", "path", "samesite"} <= _attributes(cookies[name])
                assert "domain" not in _attributes(cookies[name])
            assert (await http.get("/")).status_code == 200


async def test_a_post_without_the_session_token_is_refused(client: httpx.AsyncClient) -> None:
    assert (await register(client, "erin")).status_code == 201
    token = await sign_in(client, "erin")
    refused = await client.post("/logout", data={})
    assert refused.status_code == 403
    assert "text/html" in refused.headers["content-type"]
    wrong = await client.post("/logout", data={"csrf_token": "0" * 64})
    assert wrong.status_code == 403
    # The session survived both: the right token still signs out.
    assert (await client.get("/")).status_code == 200
    assert (await client.post("/logout", headers={"X-CSRF-Token": token})).status_code == 303


async def test_a_cross_site_post_is_refused_even_with_a_valid_token(client: httpx.AsyncClient) -> None:
    assert (await register(client, "fred")).status_code == 201
    token = await sign_in(client, "fred")
    for headers in (
        {"Origin": "https://evil.example", "X-CSRF-Token": token},
        {"Sec-Fetch-Site": "cross-site", "X-CSRF-Token": token},
        {"Origin": "null", "X-CSRF-Token": token},
    ):
        refused = await client.post("/logout", headers=headers)
        assert refused.status_code == 403, headers
    assert (await client.get("/")).status_code == 200  # still signed in


async def test_sign_in_needs_the_forms_own_token(client: httpx.AsyncClient) -> None:
    assert (await register(client, "gina")).status_code == 201
    form = {"username": "gina", "password": PASSWORD, "csrf_token": "x"}
    no_cookie = await client.post("/login", data=form)
    assert no_cookie.status_code == 403
    await client.get("/login")
    wrong = await client.post("/login", data=form)
    assert wrong.status_code == 403
    assert "agentkeep-access" not in client.cookies


async def test_static_files_are_served_with_immutable_caching(client: httpx.AsyncClient) -> None:
    page = await client.get("/login")
    paths = [part.split('"')[0] for part in page.text.split('src="')[1:]]
    assert any(path.endswith("vendor/htmx/htmx.min.js") for path in paths)
    for path in paths:
        answer = await client.get(path)
        assert answer.status_code == 200, path
        assert answer.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert answer.headers["content-type"].startswith("text/javascript")
    digest_changed = paths[0].replace("/static/", "/static/0", 1)
    assert (await client.get(digest_changed)).status_code == 404
    assert (await client.get("/static/x/vendor/VENDORED.md")).status_code == 404


async def test_the_console_is_left_out_of_the_openapi_document(
    make_settings: Callable[..., Settings], sqlite_url: str
) -> None:
    app = create_app(make_settings(database_url=sqlite_url, api_docs_enabled=True))
    paths = app.openapi()["paths"]
    assert "/login" not in paths
    assert "/" not in paths
