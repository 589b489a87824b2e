"""The console's cookie session: the access and refresh tokens of an ordinary login session
(auth/service.py), kept in httpOnly cookies.

- Production (and any request that arrived over https): `__Host-` names, `Secure`,
  `SameSite=Strict`, `Path=/`. Development over plain http (`make run`): the same cookies
  without the prefix and without `Secure`, which a browser would refuse over http.
- An expired access token is renewed server-side with the refresh cookie (rotation); a
  refresh token presented twice revokes its family, exactly as on POST /auth/refresh.
- A revoked session (logout elsewhere, password change) fails the per-request check every
  API call makes, and the console answers with the sign-in page.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from agentkeep.audit.service import audit_service_for
from agentkeep.auth.errors import RefreshRejected
from agentkeep.auth.service import AuthService, IssuedTokens
from agentkeep.config import Settings
from agentkeep.context import request_context
from agentkeep.db.session import own_transaction

ACCESS = "agentkeep-access"
REFRESH = "agentkeep-refresh"
# Set on the sign-in and registration pages: what their forms' CSRF token is bound to.
PRESESSION = "agentkeep-presession"
SECURE_PREFIX = "__Host-"
# Two requests of one page can both find the access token expired: the second is handed the
# pair the first obtained instead of presenting the (now used) refresh token again, which
# would read as theft and revoke the session. Per process (docs/console.md).
COALESCE_SECONDS = 30.0

CookieChange = Callable[[Response], None]
SCOPE_KEY = "agentkeep.console"


@dataclass(frozen=True, slots=True)
class CookiePolicy:
    secure: bool

    def name(self, base: str) -> str:
        return SECURE_PREFIX + base if self.secure else base

    def set(self, response: Response, base: str, value: str, max_age: int | None) -> None:
        response.set_cookie(
            self.name(base),
            value,
            max_age=max_age,
            path="/",
            secure=self.secure,
            httponly=True,
            samesite="strict",
        )

    def delete(self, response: Response, base: str) -> None:
        response.delete_cookie(
            self.name(base), path="/", secure=self.secure, httponly=True, samesite="strict"
        )


def cookie_policy(request: Request) -> CookiePolicy:
    settings: Settings = request.app.state.settings
    return CookiePolicy(secure=settings.environment == "production" or request.url.scheme == "https")


def read_cookie(request: Request, base: str) -> str | None:
    return request.cookies.get(cookie_policy(request).name(base)) or None


def request_slot(request: Request) -> dict[str, Any]:
    """What the console keeps about one request (the caller, cookie changes, the sign-in
    form's token). In the ASGI scope itself: `request.state` can be a dict shared by every
    request (a lifespan's state), and this must never outlive its request."""
    slot: dict[str, Any] = request.scope.setdefault(SCOPE_KEY, {})
    return slot


def pending_cookies(request: Request) -> list[CookieChange]:
    """Cookie changes decided while handling `request`, applied to whatever answers it."""
    changes: list[CookieChange] = request_slot(request).setdefault("cookies", [])
    return changes


def apply_cookies(request: Request, response: Response) -> Response:
    for change in pending_cookies(request):
        change(response)
    return response


def store_tokens(request: Request, issued: IssuedTokens) -> None:
    policy = cookie_policy(request)

    def change(response: Response) -> None:
        # The access cookie lives as long as the refresh token: an expired access token is
        # still needed to know the session, and is renewed with the refresh cookie.
        policy.set(response, ACCESS, issued.access_token, issued.refresh_expires_in)
        policy.set(response, REFRESH, issued.refresh_token, issued.refresh_expires_in)

    pending_cookies(request).append(change)


def forget_tokens(request: Request) -> None:
    policy = cookie_policy(request)

    def change(response: Response) -> None:
        policy.delete(response, ACCESS)
        policy.delete(response, REFRESH)

    pending_cookies(request).append(change)


class RefreshCoalescer:
    """The latest rotation per refresh token, for COALESCE_SECONDS (one per app)."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._recent: dict[str, tuple[float, IssuedTokens]] = {}

    async def rotate(self, request: Request, refresh_token: str) -> IssuedTokens:
        async with self._lock:
            now = time.monotonic()
            self._recent = {k: v for k, v in self._recent.items() if now - v[0] < COALESCE_SECONDS}
            found = self._recent.get(refresh_token)
            if found is not None:
                return found[1]
            issued = await _refresh(request, refresh_token)
            self._recent[refresh_token] = (now, issued)
            return issued


async def _refresh(request: Request, refresh_token: str) -> IssuedTokens:
    """POST /auth/refresh's rotation, in a transaction of its own: it commits even when the
    page that needed it fails. A rejected token raises out of the transaction, which rolls
    back; the refusal's audit record and a reuse's family revocation are written as on the
    API (the revocation, like there, by answering rather than raising)."""
    state = request.app.state
    rejected: RefreshRejected | None = None
    async with own_transaction(request) as session:
        service = AuthService(
            session,
            state.settings,
            state.password_hasher,
            state.token_codec,
            audit_service_for(request, session),
            state.login_throttle,
            state.metrics,
        )
        try:
            issued = await service.refresh(refresh_token, request_context(request))
        except RefreshRejected as exc:
            if not exc.family_revoked:
                raise
            rejected = exc  # commit the family's revocation, then refuse
    if rejected is not None:
        raise rejected
    return issued
