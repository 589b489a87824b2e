"""The client's address: the socket peer, or X-Forwarded-For only through trusted proxies."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Sequence[str]) -> tuple[IPNetwork, ...]:
    """Parse CIDRs (or bare addresses); raise ValueError naming the first bad entry."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address or CIDR range") from None
    return tuple(networks)


def _parse_ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    candidate = value.strip().strip('"')
    if candidate.startswith("[") and "]" in candidate:  # [v6]:port
        candidate = candidate[1 : candidate.index("]")]
    elif candidate.count(":") == 1:  # v4:port
        candidate = candidate.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(candidate)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: str, proxies: Sequence[IPNetwork]) -> bool:
    parsed = _parse_ip(address)
    return parsed is not None and any(parsed in network for network in proxies)


def resolve_client_ip(
    peer: str | None, forwarded_for: Sequence[str], trusted_proxies: Sequence[IPNetwork]
) -> str | None:
    """Return the address to attribute a request to.

    The peer is believed unless it is a trusted proxy; then X-Forwarded-For is read from the
    right, skipping trusted proxies, and the first other address wins. A client can prepend
    anything to the header, so the leftmost entries are never believed.
    """
    if peer is None or not trusted_proxies or not _trusted(peer, trusted_proxies):
        parsed = _parse_ip(peer) if peer else None
        return str(parsed) if parsed else peer
    hops = [hop for header in forwarded_for for hop in header.split(",") if hop.strip()]
    for hop in reversed(hops):
        parsed = _parse_ip(hop)
        if parsed is None:
            # Garbage in the chain: stop at the last address a trusted proxy vouched for.
            break
        if not any(parsed in network for network in trusted_proxies):
            return str(parsed)
    return str(_parse_ip(peer) or peer)
