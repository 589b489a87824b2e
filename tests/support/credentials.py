"""Record every credential the tests send or receive over HTTP, for the secret scan.

Every httpx client of the suite (in-process ASGI apps and real servers alike) goes through
`Client.send` / `AsyncClient.send`; wrapping those two records, from each request, the
passwords (right or wrong), keys and tokens in its JSON or form body and its `Authorization` /
`X-API-Key` headers, and from each response the tokens and keys the product issued. The field
names are written here from the documented API (docs/auth.md, docs/orgs.md,
docs/providers.md), not taken from the product's own redaction rules.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

Remember = Callable[[object, str], None]

# Body fields that carry a credential, in requests and responses.
SECRET_FIELDS = frozenset(
    {
        "password",
        "current_password",
        "new_password",
        "old_password",
        "api_key",
        "access_token",
        "refresh_token",
        "id_token",
        "token",
        "secret",
        "client_secret",
    }
)
# The API key create response names the secret `key`; elsewhere `key` is no credential.
API_KEY_FIELD = "key"
API_KEY_PREFIX = "ak_"
MAX_BODY = 1 << 20


def _walk(value: Any, remember: Remember, origin: str) -> None:
    if isinstance(value, dict):
        # A password policy test submits the user's own email as the password: that value
        # is public, and stored as the email.
        public = {
            item.lower()
            for key, item in value.items()
            if isinstance(item, str) and str(key).lower() not in SECRET_FIELDS
        }
        for key, item in value.items():
            name = str(key).lower()
            if name in SECRET_FIELDS and isinstance(item, str) and item.lower() not in public:
                remember(item, f"{name} {origin}")
            elif name == API_KEY_FIELD and isinstance(item, str) and item.startswith(API_KEY_PREFIX):
                remember(item, f"API key {origin}")
            else:
                _walk(item, remember, origin)
    elif isinstance(value, list):
        for item in value:
            _walk(item, remember, origin)


def _body(content: bytes, content_type: str) -> Any:
    if not content or len(content) > MAX_BODY:
        return None
    text = content.decode(errors="replace")
    if "json" in content_type:
        try:
            return json.loads(text)
        except ValueError:
            return None
    if "x-www-form-urlencoded" in content_type:
        return dict(parse_qsl(text, keep_blank_values=True))
    return None


def record_request(request: httpx.Request, remember: Remember) -> None:
    origin = f"sent to {request.method} {request.url.path}"
    authorization = request.headers.get("authorization", "")
    scheme, _, credential = authorization.partition(" ")
    if credential:
        remember(credential.strip(), f"{scheme.lower()} credential {origin}")
    if "x-api-key" in request.headers:
        remember(request.headers["x-api-key"], f"X-API-Key {origin}")
    try:
        content = request.content
    except httpx.RequestNotRead:
        return  # a streamed upload: none of the suite's credentials travel that way
    _walk(_body(content, request.headers.get("content-type", "")), remember, origin)


def record_response(response: httpx.Response, remember: Remember) -> None:
    try:
        content = response.content
    except httpx.ResponseNotRead:
        return  # a stream (SSE): events carry no credentials
    origin = f"issued by {response.request.method} {response.request.url.path}"
    _walk(_body(content, response.headers.get("content-type", "")), remember, origin)


def record_http_credentials(monkeypatch: pytest.MonkeyPatch, remember: Remember) -> None:
    """Wrap every httpx client's send so each credential it carries is remembered."""
    sync_send = httpx.Client.send
    async_send = httpx.AsyncClient.send

    def send(self: httpx.Client, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        record_request(request, remember)
        response = sync_send(self, request, **kwargs)
        record_response(response, remember)
        return response

    async def asend(self: httpx.AsyncClient, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        record_request(request, remember)
        response = await async_send(self, request, **kwargs)
        record_response(response, remember)
        return response

    monkeypatch.setattr(httpx.Client, "send", send)
    monkeypatch.setattr(httpx.AsyncClient, "send", asend)
