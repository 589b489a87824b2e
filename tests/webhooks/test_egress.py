"""What a webhook URL may be, by deployment: https in production unless the operator's
allowlist names the host; the guard's refusals whatever the environment."""

from __future__ import annotations

import pytest

from agentkeep.tools.netguard import EgressAllowlist
from agentkeep.webhooks.egress import WebhookAddressRefused, WebhookEgress

ALLOWLIST = EgressAllowlist.parse(["10.20.0.0/16", "hooks.internal"])


def test_production_requires_https_outside_the_allowlist() -> None:
    egress = WebhookEgress(ALLOWLIST, production=True)
    with pytest.raises(WebhookAddressRefused):
        egress.check_url("http://hooks.example.com/hook")
    egress.check_url("https://hooks.example.com/hook")
    egress.check_url("http://hooks.internal/hook")
    egress.check_url("http://10.20.0.7/hook")


@pytest.mark.parametrize("production", [True, False])
def test_listed_networks_do_not_open_metadata_or_other_private_addresses(production: bool) -> None:
    egress = WebhookEgress(ALLOWLIST, production=production)
    for url in ("https://169.254.169.254/", "https://10.21.0.1/hook", "https://[fd00:ec2::254]/"):
        with pytest.raises(WebhookAddressRefused):
            egress.check_url(url)
