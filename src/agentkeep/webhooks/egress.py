"""Where webhooks may be delivered: the netguard address policy with WEBHOOK_ALLOWED_NETWORKS.

Every request goes through `GuardedTransport` (the host resolved, every address public unless
the allowlist exempts it, metadata never, the connection pinned to a checked address), and
redirects are never followed: a 3xx answer is a failed attempt. A URL is also checked when it
is saved, for what the URL alone tells: plain http (production: only for an allowlisted
host) and literal addresses the guard would refuse.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field

import httpx2

from agentkeep.config import Settings
from agentkeep.errors import InvalidInput
from agentkeep.tools.context import Resolver, system_resolve
from agentkeep.tools.guarded_transport import GuardedTransport
from agentkeep.tools.netguard import EgressAllowlist


class WebhookAddressRefused(InvalidInput):
    type_slug = "webhook-address-refused"
    title = "Webhook address refused"


@dataclass(frozen=True, slots=True)
class WebhookEgress:
    allowlist: EgressAllowlist = field(default_factory=EgressAllowlist)
    resolve: Resolver = system_resolve
    production: bool = True
    timeout_seconds: float = 10.0
    verify: ssl.SSLContext | bool = True

    @classmethod
    def from_settings(cls, settings: Settings, resolve: Resolver = system_resolve) -> WebhookEgress:
        return cls(
            allowlist=EgressAllowlist.parse(settings.webhook_allowed_networks),
            resolve=resolve,
            production=settings.environment == "production",
            timeout_seconds=settings.webhook_timeout_seconds,
        )

    def check_url(self, url: str) -> None:
        """Refuse, before any request, what the URL alone shows the guard would refuse."""
        parsed = httpx2.URL(url)
        refusal, allowlisted = self.allowlist.check_literal(parsed.host)
        if refusal is not None:
            raise WebhookAddressRefused(
                f"refused: {refusal}; a private address needs WEBHOOK_ALLOWED_NETWORKS "
                "to list it (metadata addresses never).",
                extra={"field": "url"},
            )
        if parsed.scheme == "http" and self.production and not allowlisted:
            raise WebhookAddressRefused(
                "url must use https (plain http is accepted in production only for a host "
                "WEBHOOK_ALLOWED_NETWORKS lists).",
                extra={"field": "url"},
            )

    def client(self) -> httpx2.AsyncClient:
        """A client whose requests pass the guard, that never follows a redirect."""
        transport = GuardedTransport(self.allowlist, self.resolve, verify=self.verify)
        return httpx2.AsyncClient(
            transport=transport,
            follow_redirects=False,
            timeout=httpx2.Timeout(self.timeout_seconds),
            trust_env=False,
        )
