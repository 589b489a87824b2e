"""The address policy on its own: public addresses pass, the rest are refused with a reason."""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from agentkeep.tools.netguard import check_allowlist_entry, refusal_reason


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_are_permitted(address: str) -> None:
    assert refusal_reason(ip_address(address)) is None


@pytest.mark.parametrize(
    ("address", "reason", "exemptible"),
    [
        ("127.0.0.1", "a loopback address", True),
        ("10.1.2.3", "a private address", True),
        ("100.100.0.1", "a shared (carrier-grade NAT) address", True),
        ("192.0.2.1", "a private address", True),
        ("fec0::1", "a site-local address", True),
        ("169.254.169.254", "a cloud metadata address", False),
        ("169.254.170.2", "a cloud metadata address", False),
        ("100.100.100.200", "a cloud metadata address", False),
        ("::ffff:169.254.169.254", "a cloud metadata address", False),
        ("0.0.0.0", "an unspecified address", False),  # noqa: S104
        ("ff02::1", "a multicast address", False),
    ],
)
def test_refusal_reasons(address: str, reason: str, exemptible: bool) -> None:
    assert refusal_reason(ip_address(address)) == (reason, exemptible)


@pytest.mark.parametrize(
    ("entry", "normalised"),
    [
        ("Example.COM.", "example.com"),
        ("[::1]", "::1"),
        ("127.0.0.1", "127.0.0.1"),
        ("internal_api", "internal_api"),
    ],
)
def test_allowlist_entries_are_normalised(entry: str, normalised: str) -> None:
    assert check_allowlist_entry(entry) == normalised


@pytest.mark.parametrize(
    "entry", ["a b", "example.com/x", "*.example.com", "-bad.example", "0x7f.1", "metadata"]
)
def test_malformed_or_forbidden_allowlist_entries_are_refused(entry: str) -> None:
    with pytest.raises(ValueError, match=r"not a host name|can never be allowed"):
        check_allowlist_entry(entry)
