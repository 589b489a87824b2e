"""Which network targets a tool may reach: URL checks and the address policy against SSRF.

A target is checked on its resolved addresses, never on its spelling: a name is resolved and
every address it resolves to must be public, and the caller then connects to one of those
checked addresses (pinning), so a second DNS answer (rebinding) is never used. Hosts named
in an agent's allowlist (or, for model endpoints, in PROVIDER_ALLOWED_NETWORKS) may resolve to
private addresses; unspecified, multicast and cloud metadata targets are refused even then.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

import httpx

from agentkeep.tools.context import IPAddress, Resolver
from agentkeep.tools.errors import ToolError

METADATA_ADDRESSES = frozenset(
    ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")
)
METADATA_HOSTNAMES = frozenset(
    {"metadata", "metadata.google.internal", "metadata.goog", "instance-data", "instance-data.ec2.internal"}
)
SHARED_ADDRESS_SPACE = ip_network("100.64.0.0/10")
NAT64_PREFIXES = (ip_network("64:ff9b::/96"), ip_network("64:ff9b:1::/48"))
HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$"
)
# A last label that is a number: "2130706433", "0x7f.1", "0177.0.0.1" spell IPv4 addresses that
# resolvers accept and ipaddress does not; no real host name ends with a numeric label.
NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")
IPNetwork = IPv4Network | IPv6Network


@dataclass(frozen=True, slots=True)
class Target:
    """A checked http(s) URL and its normalised host."""

    url: httpx.URL
    host: str
    port: int
    literal: IPAddress | None


@dataclass(frozen=True, slots=True)
class Pin:
    """How to send a request for a checked target to one of its checked addresses: the
    address in the URL, the name kept as Host header and as TLS server name (the
    certificate is still verified for the name), so DNS is never asked again."""

    url: str
    host_header: str
    sni_hostname: str | None


def pin(target: Target, address: IPAddress) -> Pin:
    sni = target.host if target.url.scheme == "https" and target.literal is None else None
    return Pin(str(target.url.copy_with(host=str(address))), target.url.netloc.decode("ascii"), sni)


def _embedded_ipv4(address: IPv6Address) -> IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if any(address in prefix for prefix in NAT64_PREFIXES):
        return IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refusal_reason(address: IPAddress) -> tuple[str, bool] | None:
    """Why `address` is not a public unicast address, and whether an allowlist may exempt it."""
    if address.is_unspecified:
        return "an unspecified address", False
    if address.is_multicast:
        return "a multicast address", False
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address", False
    if isinstance(address, IPv6Address) and (embedded := _embedded_ipv4(address)) is not None:
        return refusal_reason(embedded)
    checks = (
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address in SHARED_ADDRESS_SPACE, "a shared (carrier-grade NAT) address"),
        (address.is_private, "a private address"),
        (address.is_reserved, "a reserved address"),
        (isinstance(address, IPv6Address) and address.is_site_local, "a site-local address"),
        (not address.is_global, "not a public address"),
    )
    for failed, reason in checks:
        if failed:
            return reason, True
    return None


def normalise_host(host: str) -> str:
    """Lower case, no trailing dot, no IPv6 brackets, canonical IP spelling."""
    host = host.strip().lower().rstrip(".").removeprefix("[").removesuffix("]")
    try:
        return str(ip_address(host))
    except ValueError:
        return host


def check_allowlist_entry(entry: str) -> str:
    """Normalise one allowlist entry; ValueError when it is not a bare host name or IP address."""
    host = normalise_host(entry)
    try:
        literal: IPAddress | None = ip_address(host)
    except ValueError:
        literal = None
        if not HOSTNAME.match(host) or NUMERIC_LABEL.match(host.rsplit(".", 1)[-1]):
            raise ValueError(
                f"{entry!r} is not a host name or IP address (no scheme, port or path)"
            ) from None
    if host in METADATA_HOSTNAMES or (literal and (reason := refusal_reason(literal)) and not reason[1]):
        raise ValueError(f"{entry!r} can never be allowed: it is a metadata, unspecified or multicast target")
    return host


@dataclass(frozen=True, slots=True)
class EgressAllowlist:
    """Host names and networks exempt from the private-address refusal (never from the
    metadata, unspecified or multicast one)."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> EgressAllowlist:
        """CIDR ranges, IP addresses and host names; ValueError naming the first bad entry."""
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for entry in entries:
            if "/" in entry:
                try:
                    networks.append(ip_network(entry.strip()))
                except ValueError:
                    raise ValueError(
                        f"{entry!r} is not a CIDR range (host bits zero, e.g. 10.0.0.0/8) "
                        "nor a host name or IP address"
                    ) from None
            else:
                hosts.add(check_allowlist_entry(entry))
        return cls(frozenset(hosts), tuple(networks))

    def with_host(self, host: str) -> EgressAllowlist:
        return EgressAllowlist(self.hosts | {normalise_host(host)}, self.networks)

    def exempts(self, host: str, address: IPAddress) -> bool:
        return host in self.hosts or any(address in network for network in self.networks)

    def check_literal(self, host: str) -> tuple[str | None, bool]:
        """What a URL's host alone tells, before any lookup: the refusal (None when there is
        none to make without resolving it), and whether the allowlist names the host."""
        host = normalise_host(host)
        try:
            literal: IPAddress | None = ip_address(host)
        except ValueError:
            literal = None
        allowlisted = host in self.hosts or (
            literal is not None and any(literal in network for network in self.networks)
        )
        reason = refusal_reason(literal) if literal is not None else None
        if reason is None or (reason[1] and allowlisted):
            return None, allowlisted
        return f"{host} is {reason[0]}", allowlisted


def parse_target(raw: str | httpx.URL) -> Target:
    """Check the URL's form (scheme, credentials, host spelling); no network access."""
    try:
        url = httpx.URL(raw)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise ToolError(f"invalid URL: {exc}") from None
    if url.scheme and url.scheme not in ("http", "https"):
        raise ToolError("refused: only http and https URLs are allowed")
    if not url.is_absolute_url:
        raise ToolError("invalid URL: an absolute http or https URL is required")
    if url.userinfo:
        raise ToolError("refused: credentials in URLs are not allowed")
    host = normalise_host(url.host)
    if not host:
        raise ToolError("invalid URL: no host")
    try:
        literal: IPAddress | None = ip_address(host)
    except ValueError:
        literal = None
        if NUMERIC_LABEL.match(host.rsplit(".", 1)[-1]):
            raise ToolError(f"refused: {host!r} is not a canonical IP address") from None
    port = url.port or (443 if url.scheme == "https" else 80)
    return Target(url=url, host=host, port=port, literal=literal)


async def checked_addresses(
    target: Target, allowlist: EgressAllowlist, only_allowed: bool, resolve: Resolver
) -> list[IPAddress]:
    """The target's addresses, each one permitted; a `ToolError` before any connection otherwise."""
    if only_allowed and target.host not in allowlist.hosts:
        raise ToolError(f"refused: {target.host} is not in this agent's allowed hosts")
    if target.host in METADATA_HOSTNAMES:
        raise ToolError(f"refused: {target.host} is a cloud metadata host")
    if target.literal is not None:
        addresses = [target.literal]
    else:
        try:
            addresses = await resolve(target.host, target.port)
        except (OSError, UnicodeError, ValueError):
            raise ToolError(f"could not resolve host {target.host}") from None
        if not addresses:
            raise ToolError(f"could not resolve host {target.host}")
    for address in addresses:
        refusal = refusal_reason(address)
        if refusal is not None and not (refusal[1] and allowlist.exempts(target.host, address)):
            if target.literal is not None:
                raise ToolError(f"refused: {address} is {refusal[0]}")
            raise ToolError(f"refused: {target.host} resolves to {address}, {refusal[0]}")
    return addresses


__all__ = [
    "EgressAllowlist",
    "Pin",
    "Target",
    "check_allowlist_entry",
    "checked_addresses",
    "parse_target",
    "pin",
    "refusal_reason",
]
