"""The security headers every response carries (2xx, 4xx, 5xx, preflights, refusals),
encoded once: the per-request middleware (observability/middleware.py) and the admission
gate (security/in_flight.py) append them as they are."""

from __future__ import annotations

API_CSP = "default-src 'none'; frame-ancestors 'none'"
# The interactive docs load Swagger UI / ReDoc from their CDN and run inline bootstrap code.
DOCS_CSP = (
    "default-src 'none'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    "font-src https://fonts.gstatic.com; img-src 'self' data: https://fastapi.tiangolo.com "
    "https://cdn.redoc.ly; connect-src 'self'; worker-src blob:; frame-ancestors 'none'"
)
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})
# The web console's pages (docs/console.md): scripts and styles from our own origin only (the
# vendored htmx, no inline script, no eval), forms posting back to us, never framed.
CONSOLE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
# A console answer carries this header; the per-request middleware drops it and sends the
# console's CSP instead of the API's (only the console knows which paths are its pages).
CONSOLE_MARKER = b"x-agentkeep-console"
# Console pages: no referrer to other sites, but the browser's `Origin` on our own forms
# (under `no-referrer` it sends `Origin: null`, and the CSRF check needs the real one).
CONSOLE_REFERRER = "same-origin"
HSTS = "max-age=63072000; includeSubDomains"

EncodedHeaders = tuple[tuple[bytes, bytes], ...]


def security_headers(*, hsts: bool, csp: str = API_CSP, referrer: str = "no-referrer") -> EncodedHeaders:
    """The headers, as ASGI wants them (lower-case names, bytes)."""
    headers = {
        "x-content-type-options": "nosniff",
        "content-security-policy": csp,
        "referrer-policy": referrer,
        "x-frame-options": "DENY",
        "cross-origin-opener-policy": "same-origin",
        "cross-origin-resource-policy": "same-origin",
    }
    if hsts:
        headers["strict-transport-security"] = HSTS
    return tuple((name.encode(), value.encode()) for name, value in headers.items())


# Set by us alone: a response's own value of one of these (or the server's name) is dropped.
REPLACED_HEADERS = frozenset(name for name, _ in security_headers(hsts=True)) | {b"server"}
