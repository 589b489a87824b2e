"""Client address resolution: X-Forwarded-For is believed only from trusted proxies."""

from __future__ import annotations

import pytest

from agentkeep.security.client_ip import parse_networks, resolve_client_ip

PROXIES = parse_networks(["10.0.0.0/8", "192.0.2.1"])


def test_untrusted_peer_ignores_a_forged_header() -> None:
    assert resolve_client_ip("203.0.113.9", ["1.2.3.4"], PROXIES) == "203.0.113.9"


def test_without_trusted_proxies_the_header_changes_nothing() -> None:
    assert resolve_client_ip("10.1.1.1", ["1.2.3.4"], ()) == "10.1.1.1"


def test_trusted_proxy_yields_the_rightmost_untrusted_hop() -> None:
    # The client forged "6.6.6.6"; the proxy appended the real peer 198.51.100.7.
    assert resolve_client_ip("10.0.0.5", ["6.6.6.6, 198.51.100.7"], PROXIES) == "198.51.100.7"


def test_chained_trusted_proxies_are_skipped() -> None:
    assert resolve_client_ip("10.0.0.5", ["198.51.100.7, 192.0.2.1", "10.2.2.2"], PROXIES) == "198.51.100.7"


def test_all_hops_trusted_falls_back_to_the_peer() -> None:
    assert resolve_client_ip("10.0.0.5", ["10.9.9.9"], PROXIES) == "10.0.0.5"


def test_garbage_hop_stops_the_walk() -> None:
    assert resolve_client_ip("10.0.0.5", ["1.1.1.1, not-an-ip"], PROXIES) == "10.0.0.5"


def test_ipv6_and_ports_are_understood() -> None:
    assert resolve_client_ip("10.0.0.5", ["[2001:db8::1]:4711"], PROXIES) == "2001:db8::1"
    assert resolve_client_ip("10.0.0.5", ["198.51.100.7:5555"], PROXIES) == "198.51.100.7"
    assert resolve_client_ip("::ffff:203.0.113.9", [], PROXIES) == "203.0.113.9"


def test_bad_proxy_entries_are_refused() -> None:
    with pytest.raises(ValueError, match="not an IP address"):
        parse_networks(["10.0.0.0/8", "proxy.local"])
