"""A person signing in: AgentKeep's redirect, the provider's own login form over real HTTP,
and back to AgentKeep's callback.

`client` is the test's client of the AgentKeep app (it keeps the browser-binding cookie);
the provider is reached over loopback HTTP with a cookie jar of its own. The `tamper_*`
hooks let a test play the attacker who alters a URL on its way.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import httpx

APP_ORIGIN = "http://testserver"
FORM_ACTION = re.compile(r'<form[^>]*action="([^"]+)"')
MAX_HOPS = 10

UrlTamper = Callable[[str], str]


@dataclass
class SignIn:
    authorization_url: str
    callback_url: str
    response: httpx.Response


def replace_query(url: str, **values: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(values)
    return urlunsplit(parts._replace(query=urlencode(query)))


async def _follow(browser: httpx.AsyncClient, response: httpx.Response) -> tuple[httpx.Response, str | None]:
    """Follow the provider's redirects; stop at a page, or at a redirect back to AgentKeep."""
    for _ in range(MAX_HOPS):
        location = response.headers.get("location")
        if response.status_code not in (302, 303) or not location:
            return response, None
        target = urljoin(str(response.url), location)
        if target.startswith(APP_ORIGIN):
            return response, target
        response = await browser.get(target)
    raise AssertionError("too many redirects at the provider")


async def provider_round_trip(authorization_url: str, login: str) -> str:
    """Open the authorization URL, fill in the provider's login form; the callback URL it sends back to."""
    async with httpx.AsyncClient(follow_redirects=False, timeout=30) as browser:
        response, callback = await _follow(browser, await browser.get(authorization_url))
        if callback is not None:
            return callback
        assert response.status_code == 200, response.text
        action = FORM_ACTION.search(response.text)
        assert action is not None, f"no login form at the provider:\n{response.text[:2000]}"
        submitted = await browser.post(
            urljoin(str(response.url), action.group(1)),
            data={"prompt": "login", "login": login, "password": "any password the form asks for"},
        )
        response, callback = await _follow(browser, submitted)
        assert callback is not None, f"the provider did not send the browser back:\n{response.text[:2000]}"
        return callback


async def sign_in(
    client: httpx.AsyncClient,
    provider: str,
    login: str,
    *,
    org: str | None = None,
    tamper_authorization: UrlTamper | None = None,
    tamper_callback: UrlTamper | None = None,
) -> SignIn:
    started = await client.get(f"/auth/oidc/{provider}/login", params={"org": org} if org else None)
    assert started.status_code == 302, started.text
    authorization_url = started.headers["location"]
    if tamper_authorization is not None:
        authorization_url = tamper_authorization(authorization_url)
    callback = await provider_round_trip(authorization_url, login)
    if tamper_callback is not None:
        callback = tamper_callback(callback)
    response = await client.get(callback.removeprefix(APP_ORIGIN))
    return SignIn(authorization_url, callback, response)
