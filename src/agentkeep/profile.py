"""The production profile: the safeguards `ENVIRONMENT=production` insists on.

In production each relaxed safeguard is a configuration problem (the process refuses to
start); in development the same list is logged at start so nobody mistakes a laptop setup
for a hardened one.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentkeep.config import Settings

MAX_PRODUCTION_ACCESS_TTL = 900


def relaxed_safeguards(settings: Settings) -> list[str]:
    """One line per safeguard that is off, each naming its variable first."""
    relaxed = []
    if settings.is_sqlite:
        relaxed.append("DATABASE_URL: SQLite serves a single instance; production requires PostgreSQL")
    if settings.redis_url is None:
        relaxed.append(
            "REDIS_URL: unset, so rate limits are per process; "
            "production requires Redis shared by all instances"
        )
    if not settings.allowed_hosts:
        relaxed.append(
            "ALLOWED_HOSTS: unset, so any Host header is answered; production requires the host names"
        )
    plain = [origin for origin in settings.cors_origins if not origin.startswith("https://")]
    if plain:
        relaxed.append(f"CORS_ORIGINS: {', '.join(plain)} not https; production requires https origins")
    if settings.access_token_ttl_seconds > MAX_PRODUCTION_ACCESS_TTL:
        relaxed.append(
            f"ACCESS_TOKEN_TTL_SECONDS: {settings.access_token_ttl_seconds}s; "
            f"production allows at most {MAX_PRODUCTION_ACCESS_TTL}s"
        )
    wildcard = [
        proxy
        for proxy in settings.trusted_proxies
        if ipaddress.ip_network(proxy.strip(), strict=False).prefixlen == 0
    ]
    if wildcard:
        relaxed.append(
            f"TRUSTED_PROXIES: {', '.join(wildcard)} trusts every peer to name its own address; "
            "production requires the proxies' own ranges"
        )
    if settings.audit_hmac_key is None:
        relaxed.append(
            "AUDIT_HMAC_KEY: unset, so audit records carry no MAC and checkpoints are unsigned "
            "(anyone who can write to the database can rewrite the audit trail undetected); "
            "production requires it (generate one with `agentkeep gen-secret`)"
        )
    if not settings.secrets_encryption_keys:
        relaxed.append(
            "SECRETS_ENCRYPTION_KEYS: unset, so provider credentials cannot be stored; "
            "production requires a key for secrets at rest"
        )
    return relaxed
