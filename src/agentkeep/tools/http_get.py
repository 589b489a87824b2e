"""`http_get`: fetch a URL with GET, within per-agent limits and the SSRF policy of netguard.

Redirects are followed by hand so every hop is checked again. Each request goes to a checked
IP address with the original Host header (and, for https, the original name as TLS server
name, so the certificate is verified for the name), so DNS is consulted once per hop and its
answer is the one that was checked.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import httpx
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue

from agentkeep.tools.context import IPAddress, ToolContext
from agentkeep.tools.errors import ToolError
from agentkeep.tools.netguard import (
    EgressAllowlist,
    Target,
    check_allowlist_entry,
    checked_addresses,
    parse_target,
    pin,
)

KIB = 1024
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
TEXT_TYPES = frozenset(
    {
        "application/json",
        "application/xml",
        "application/javascript",
        "application/x-yaml",
        "application/yaml",
    }
)
USER_AGENT = "AgentKeep-http_get/1"

AllowedHost = Annotated[str, Field(min_length=1, max_length=255), AfterValidator(check_allowlist_entry)]


class HttpGetSettings(BaseModel):
    """Per-agent limits of `http_get` and the hosts exempt from the private-address refusal."""

    model_config = ConfigDict(extra="forbid")

    allowed_hosts: list[AllowedHost] = Field(default_factory=list, max_length=50)
    only_allowed_hosts: bool = False
    timeout_seconds: float = Field(default=10.0, ge=1.0, le=30.0)
    max_response_bytes: int = Field(default=256 * KIB, ge=1 * KIB, le=1024 * KIB)
    max_redirects: int = Field(default=3, ge=0, le=10)


class HttpGetArgs(BaseModel):
    """Fetch a public web page or API response with an HTTP GET request."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=2048, description="An absolute http or https URL.")


def _is_text(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return (
        media_type.startswith("text/") or media_type in TEXT_TYPES or media_type.endswith(("+json", "+xml"))
    )


def _pinned_request(target: Target, address: IPAddress, timeout: float) -> httpx.Request:
    pinned = pin(target, address)
    extensions: dict[str, object] = {
        "timeout": {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}
    }
    if pinned.sni_hostname is not None:
        extensions["sni_hostname"] = pinned.sni_hostname
    headers = {
        "Host": pinned.host_header,
        "Accept-Encoding": "identity",  # no decompression bombs: the size cap counts real bytes
        "User-Agent": USER_AGENT,
    }
    return httpx.Request("GET", pinned.url, headers=headers, extensions=extensions)


async def _send(
    transport: httpx.AsyncBaseTransport, target: Target, addresses: list[IPAddress], seconds: float
) -> httpx.Response:
    """Send to the first checked address that accepts a connection."""
    for address in addresses:
        request = _pinned_request(target, address, seconds)
        try:
            response = await transport.handle_async_request(request)
        except httpx.ConnectError:
            continue
        except httpx.TimeoutException:
            raise ToolError("timed out") from None
        except httpx.HTTPError as exc:
            raise ToolError(f"request to {target.host} failed: {type(exc).__name__}") from None
        response.request = request
        return response
    raise ToolError(f"could not connect to {target.host}")


async def _read_capped(response: httpx.Response, cap: int) -> tuple[bytes, bool]:
    body = bytearray()
    try:
        async for chunk in response.aiter_raw():
            if len(body) + len(chunk) > cap:
                body += chunk[: cap - len(body)]
                return bytes(body), True
            body += chunk
    except httpx.TimeoutException:
        raise ToolError("timed out while reading the response") from None
    except httpx.HTTPError as exc:
        raise ToolError(f"reading the response failed: {type(exc).__name__}") from None
    return bytes(body), False


def _result(target: Target, response: httpx.Response, body: bytes, truncated: bool) -> JsonValue:
    content_type = response.headers.get("content-type", "")
    encoding = response.headers.get("content-encoding", "identity").lower()
    result: dict[str, JsonValue] = {
        "status": response.status_code,
        "url": str(target.url),
        "content_type": content_type,
        "bytes": len(body),
        "truncated": truncated,
        "body": None,
    }
    size = f"{'at least ' if truncated else ''}{len(body)} bytes"
    if encoding not in ("identity", ""):
        result["note"] = f"{encoding}-encoded content ({content_type or 'no type'}), {size}, not decoded"
    elif _is_text(content_type):
        try:
            result["body"] = body.decode(response.charset_encoding or "utf-8", errors="replace")
        except LookupError:
            result["body"] = body.decode("utf-8", errors="replace")
    else:
        result["note"] = f"non-text content ({content_type or 'no type'}), {size}, not returned"
    return result


async def _fetch(url: str, settings: HttpGetSettings, context: ToolContext) -> JsonValue:
    allowed = EgressAllowlist(hosts=frozenset(settings.allowed_hosts))
    target = parse_target(url)
    for _hop in range(settings.max_redirects + 1):
        addresses = await checked_addresses(target, allowed, settings.only_allowed_hosts, context.resolve)
        # A fresh connection pool per hop: a TLS connection verified for one name is never
        # reused for another name that happens to share its address.
        transport = context.http_transport or httpx.AsyncHTTPTransport(retries=0)
        try:
            response = await _send(transport, target, addresses, settings.timeout_seconds)
            try:
                location = response.headers.get("location")
                if response.status_code not in REDIRECT_STATUSES or not location:
                    body, truncated = await _read_capped(response, settings.max_response_bytes)
                    return _result(target, response, body, truncated)
            finally:
                await response.aclose()
        finally:
            if context.http_transport is None:
                await transport.aclose()
        try:
            next_url = target.url.join(location)
        except (httpx.InvalidURL, ValueError):
            raise ToolError("invalid redirect location") from None
        target = parse_target(next_url)
    raise ToolError(f"too many redirects (limit {settings.max_redirects})")


async def run(args: HttpGetArgs, settings: HttpGetSettings, context: ToolContext) -> JsonValue:
    """GET the URL; status, final URL, content type and the (possibly truncated) text body."""
    try:
        async with asyncio.timeout(settings.timeout_seconds):
            return await _fetch(args.url, settings, context)
    except TimeoutError:
        raise ToolError(f"timed out after {settings.timeout_seconds:g} seconds") from None
