"""Host header allowlist (ALLOWED_HOSTS): unknown hosts get a 400 problem, not the API."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from agentkeep.errors import problem_response


def host_allowed(host: str, allowed: Sequence[str]) -> bool:
    """Match exact names and `*.example.com` suffix patterns, ignoring case and port."""
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.lower().rstrip(".")
    for pattern in allowed:
        pattern = pattern.lower()
        if pattern == name or (pattern.startswith("*.") and name.endswith(pattern[1:])):
            return True
    return False


class AllowedHostsMiddleware:
    def __init__(self, app: ASGIApp, allowed_hosts: Sequence[str]) -> None:
        self.app = app
        self.allowed_hosts = tuple(allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in {"http", "websocket"} or not self.allowed_hosts:
            await self.app(scope, receive, send)
            return
        host = Headers(scope=scope).get("host", "")
        if host_allowed(host, self.allowed_hosts):
            await self.app(scope, receive, send)
            return
        response = problem_response(Request(scope), 400, detail="Invalid Host header.")
        await response(scope, receive, send)
