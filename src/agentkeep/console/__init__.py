"""The web console: server-rendered pages at `/` of `agentkeep serve` (docs/console.md).

Pages call the same services as the API (same permissions, rate limits, idempotency and
audit); the console adds only HTML, the cookie session and its CSRF and CSP protections.
"""
