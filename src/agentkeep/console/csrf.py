"""CSRF protection of every state-changing console request (docs/console.md).

Two independent checks, both on every POST/PATCH/PUT/DELETE:

1. Where the request comes from: a browser's `Sec-Fetch-Site` must be `same-origin` (or
   `none`: typed by the user), and an `Origin`, when sent, must name this server's host.
   A request from another site is refused before anything else runs.
2. A token bound to the session: HMAC-SHA256 of the login session's id under a key derived
   from JWT_SECRET, sent by htmx in the `X-CSRF-Token` header (`hx-headers` on <body>) or by
   a plain form in the `csrf_token` field, and compared in constant time. The sign-in and
   registration forms, which have no session yet, bind theirs to a random value in a
   cookie of their own (no login CSRF either).
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from urllib.parse import urlsplit

from starlette.requests import Request

from agentkeep.config import Settings
from agentkeep.errors import Forbidden

HEADER = "x-csrf-token"
FIELD = "csrf_token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_LABEL = b"agentkeep-console-csrf"
_SAME_SITE = frozenset({"same-origin", "none"})


class CsrfRefused(Forbidden):
    type_slug = "csrf-refused"
    title = "Request refused"


def _key(settings: Settings) -> bytes:
    return hmac.new(settings.jwt_secret.get_secret_value().encode(), _LABEL, hashlib.sha256).digest()


def session_token(settings: Settings, session_id: uuid.UUID) -> str:
    return hmac.new(_key(settings), b"session:" + session_id.bytes, hashlib.sha256).hexdigest()


def presession_token(settings: Settings, nonce: str) -> str:
    return hmac.new(_key(settings), b"presession:" + nonce.encode(), hashlib.sha256).hexdigest()


def check_origin(request: Request) -> None:
    """Refuse a cross-site request (checked first: it needs no token to be refused)."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in _SAME_SITE:
        raise CsrfRefused("This request came from another site and was refused.")
    origin = request.headers.get("origin")
    # The host as the browser addressed us; the scheme is left out because a TLS proxy in
    # front makes ours http while the browser's is https.
    if origin is not None and (
        origin == "null" or urlsplit(origin).netloc.lower() != request.headers.get("host", "").lower()
    ):
        raise CsrfRefused("This request came from another origin and was refused.")


async def submitted_token(request: Request) -> str:
    header = request.headers.get(HEADER)
    if header:
        return header
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        value = (await request.form()).get(FIELD)
        if isinstance(value, str):
            return value
    return ""


async def check_token(request: Request, expected: str) -> None:
    if not hmac.compare_digest((await submitted_token(request)).encode(), expected.encode()):
        raise CsrfRefused("The form has expired or did not come from this console; reload the page.")
