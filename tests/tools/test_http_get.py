"""http_get against a local server on 127.0.0.1; no test sends traffic anywhere else."""

from __future__ import annotations

import ssl
from typing import Any

import pytest
from pydantic import ValidationError

from agentkeep.tools import ToolContext, ToolError, get_tool
from agentkeep.tools.http_get import HttpGetArgs, HttpGetSettings
from tests.tools.fixtures import RecordingResolver, RecordingTransport
from tests.tools.local_server import LocalServer
from tests.tools.tls import LocalCA


def context(transport: RecordingTransport, resolver: RecordingResolver | None = None) -> ToolContext:
    return ToolContext(http_transport=transport, resolve=resolver or RecordingResolver())


async def http_get(url: str, ctx: ToolContext, **settings: Any) -> dict[str, Any]:
    spec = get_tool("http_get")
    result = await spec.call({"url": url}, spec.parse_settings(settings), ctx)
    assert isinstance(result, dict)
    return result


LOCAL = {"allowed_hosts": ["127.0.0.1"]}


async def test_loopback_server_is_refused_by_default_before_any_connection(
    server: LocalServer, transport: RecordingTransport
) -> None:
    with pytest.raises(ToolError, match=r"refused: 127\.0\.0\.1 is a loopback address"):
        await http_get(server.url("/text"), context(transport))
    assert transport.requests == []
    assert server.requests == []


async def test_allowlisted_loopback_host_is_fetched_as_text(
    server: LocalServer, transport: RecordingTransport
) -> None:
    result = await http_get(server.url("/text"), context(transport), **LOCAL)
    assert result["status"] == 200
    assert result["body"] == "hello from the test server ✓"
    assert result["content_type"] == "text/plain; charset=utf-8"
    assert result["url"] == server.url("/text")
    assert result["truncated"] is False
    assert [r.method for r in server.requests] == ["GET"]


async def test_allowlisted_name_connects_to_the_resolved_address_with_the_original_host_header(
    server: LocalServer, transport: RecordingTransport
) -> None:
    resolver = RecordingResolver({"internal-api.example": ["127.0.0.1"]})
    url = server.url("/host", host="internal-api.example")
    result = await http_get(url, context(transport, resolver), allowed_hosts=["internal-api.example"])
    # Pinned: the connection went to the checked address, the name travelled only as Host.
    assert transport.requests[0].url.host == "127.0.0.1"
    assert result["body"] == f"internal-api.example:{server.port}"
    assert resolver.asked == ["internal-api.example"]


async def test_localhost_is_allowed_only_when_named(
    server: LocalServer, transport: RecordingTransport
) -> None:
    with pytest.raises(ToolError, match="refused: localhost resolves to"):
        await http_get(server.url("/text", host="localhost"), context(transport), **LOCAL)
    assert transport.requests == []
    result = await http_get(
        server.url("/text", host="localhost"), context(transport), allowed_hosts=["localhost"]
    )
    assert result["status"] == 200


async def test_json_is_returned_as_text_and_binary_is_summarised(
    server: LocalServer, transport: RecordingTransport
) -> None:
    assert (await http_get(server.url("/json"), context(transport), **LOCAL))["body"] == '{"answer": 42}'
    png = await http_get(server.url("/png"), context(transport), **LOCAL)
    assert png["body"] is None
    assert png["note"] == "non-text content (image/png), 108 bytes, not returned"


async def test_compressed_bodies_are_not_requested_nor_decoded(
    server: LocalServer, transport: RecordingTransport
) -> None:
    result = await http_get(server.url("/gzip"), context(transport), **LOCAL)
    assert server.requests[0].headers["accept-encoding"] == "identity"
    assert result["body"] is None
    assert result["note"].startswith("gzip-encoded content")


async def test_response_is_cut_at_the_size_cap(server: LocalServer, transport: RecordingTransport) -> None:
    result = await http_get(server.url("/big"), context(transport), max_response_bytes=2048, **LOCAL)
    assert result["truncated"] is True
    assert result["bytes"] == 2048
    assert result["body"] == "x" * 2048


async def test_slow_server_times_out_as_a_tool_error(
    server: LocalServer, transport: RecordingTransport
) -> None:
    with pytest.raises(ToolError, match="timed out"):
        await http_get(server.url("/slow"), context(transport), timeout_seconds=1, **LOCAL)


async def test_redirects_are_followed_up_to_the_limit(
    server: LocalServer, transport: RecordingTransport
) -> None:
    result = await http_get(server.url("/redirect/2"), context(transport), max_redirects=2, **LOCAL)
    assert result["body"] == "arrived"
    assert result["url"] == server.url("/redirect/0")
    with pytest.raises(ToolError, match=r"too many redirects \(limit 2\)"):
        await http_get(server.url("/redirect/3"), context(transport), max_redirects=2, **LOCAL)
    assert len(server.requests) == 3 + 3


@pytest.mark.parametrize(
    ("location", "refusal"),
    [
        ("http://10.0.0.1/", r"refused: 10\.0\.0\.1 is a private address"),
        ("http://169.254.169.254/latest/meta-data/", "refused: 169.254.169.254 is a cloud metadata address"),
        ("http://localhost:{port}/text", "refused: localhost resolves to"),
        ("file:///etc/passwd", "only http and https"),
    ],
)
async def test_redirect_to_a_refused_target_is_refused_before_connecting(
    server: LocalServer, transport: RecordingTransport, location: str, refusal: str
) -> None:
    start = server.url("/to") + "?u=" + location.format(port=server.port)
    with pytest.raises(ToolError, match=refusal):
        await http_get(start, context(transport), **LOCAL)
    assert len(transport.requests) == 1  # the first hop only
    assert len(server.requests) == 1


SSRF_TARGETS = [
    ("http://127.0.0.1/", "a loopback address"),
    ("http://10.0.0.1/", "a private address"),
    ("http://172.16.0.1/", "a private address"),
    ("http://192.168.1.1/", "a private address"),
    ("http://100.64.0.1/", "a shared"),
    ("http://169.254.169.254/latest/meta-data/", "a cloud metadata address"),
    ("http://169.254.1.1/", "a link-local address"),
    ("http://[::1]/", "a loopback address"),
    ("http://[fd00:ec2::254]/", "a cloud metadata address"),
    ("http://[fe80::1]/", "a link-local address"),
    ("http://[fc00::1]/", "a private address"),
    ("http://0.0.0.0/", "an unspecified address"),
    ("http://[::]/", "an unspecified address"),
    ("http://224.0.0.1/", "a multicast address"),
    ("http://240.0.0.1/", "address"),
    ("http://[::ffff:127.0.0.1]/", "a loopback address"),
    ("http://[::ffff:a9fe:a9fe]/", "a cloud metadata address"),
    ("http://[64:ff9b::a00:1]/", "a private address"),
    ("http://[2002:7f00:1::]/", "a loopback address"),
    ("http://2130706433/", "not a canonical IP address"),
    ("http://0x7f000001/", "not a canonical IP address"),
    ("http://127.1/", "not a canonical IP address"),
    ("http://0177.0.0.1/", "invalid URL|not a canonical"),
    ("http://localhost/", "localhost resolves to"),
    ("http://LOCALHOST./", "localhost resolves to"),
    ("http://metadata.google.internal/computeMetadata/v1/", "a cloud metadata host"),
    ("https://127.0.0.1:8443/", "a loopback address"),
    ("ftp://example.com/", "only http and https"),
    ("gopher://127.0.0.1/", "only http and https"),
    ("http://user:secret@example.com/", "credentials in URLs"),
    ("/relative/path", "an absolute http or https URL is required"),
    ("example.com", "an absolute http or https URL is required"),
]


@pytest.mark.parametrize(("url", "reason"), SSRF_TARGETS)
async def test_ssrf_targets_are_refused_before_any_connection(
    transport: RecordingTransport, url: str, reason: str
) -> None:
    resolver = RecordingResolver()
    with pytest.raises(ToolError, match=reason):
        await http_get(url, context(transport, resolver))
    assert transport.requests == []
    assert set(resolver.asked) <= {"localhost"}


async def test_a_name_with_any_private_address_is_refused(transport: RecordingTransport) -> None:
    # A rebinding-style answer mixing a public and a private address is refused as a whole.
    resolver = RecordingResolver({"mixed.example": ["93.184.215.14", "127.0.0.1"]})
    with pytest.raises(ToolError, match=r"mixed\.example resolves to 127\.0\.0\.1, a loopback address"):
        await http_get("http://mixed.example/", context(transport, resolver))
    assert transport.requests == []


async def test_metadata_stays_refused_for_an_allowlisted_name(transport: RecordingTransport) -> None:
    resolver = RecordingResolver({"internal.example": ["169.254.169.254"]})
    with pytest.raises(ToolError, match="a cloud metadata address"):
        await http_get(
            "http://internal.example/", context(transport, resolver), allowed_hosts=["internal.example"]
        )
    assert transport.requests == []


async def test_only_allowed_hosts_refuses_every_other_host(transport: RecordingTransport) -> None:
    resolver = RecordingResolver({"public.example": ["93.184.215.14"]})
    with pytest.raises(ToolError, match="not in this agent's allowed hosts"):
        await http_get(
            "http://public.example/",
            context(transport, resolver),
            allowed_hosts=["api.example"],
            only_allowed_hosts=True,
        )
    assert resolver.asked == []
    assert transport.requests == []


def test_the_model_cannot_ask_for_another_method_or_headers() -> None:
    with pytest.raises(ValidationError):
        HttpGetArgs.model_validate({"url": "http://example.com/", "method": "POST"})
    with pytest.raises(ValidationError):
        HttpGetArgs.model_validate({"url": "http://example.com/", "headers": {"X": "1"}})


async def test_bad_arguments_from_the_model_are_a_tool_error(transport: RecordingTransport) -> None:
    spec = get_tool("http_get")
    with pytest.raises(ToolError, match="invalid arguments for http_get"):
        await spec.call({"url": "http://x/", "method": "DELETE"}, spec.parse_settings({}), context(transport))


@pytest.mark.parametrize(
    "settings",
    [
        {"timeout_seconds": 0.5},
        {"timeout_seconds": 31},
        {"max_response_bytes": 2 * 1024 * 1024},
        {"max_redirects": 11},
        {"allowed_hosts": ["http://example.com/"]},
        {"allowed_hosts": ["example.com:8080"]},
        {"allowed_hosts": ["2130706433"]},
        {"allowed_hosts": ["169.254.169.254"]},
        {"allowed_hosts": ["metadata.google.internal"]},
        {"allowed_hosts": ["0.0.0.0"]},  # noqa: S104
        {"allowed_hosts": [f"h{i}.example" for i in range(51)]},
        {"proxy": "http://evil/"},
    ],
)
def test_out_of_range_settings_are_refused(settings: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        HttpGetSettings.model_validate(settings)


def test_settings_defaults_and_normalised_allowlist() -> None:
    settings = HttpGetSettings.model_validate({"allowed_hosts": ["API.Example.COM.", "[::1]"]})
    assert settings.allowed_hosts == ["api.example.com", "::1"]
    assert (settings.timeout_seconds, settings.max_response_bytes, settings.max_redirects) == (
        10.0,
        262144,
        3,
    )


@pytest.mark.parametrize(
    ("certificate_for", "trusted"), [("internal-api.example", True), ("other.example", False)]
)
async def test_https_is_pinned_to_the_address_and_verified_for_the_name(
    certificate_for: str, trusted: bool
) -> None:
    authority = LocalCA()
    server_names: list[str | None] = []
    tls = authority.server_context(certificate_for)

    def record_server_name(_socket: ssl.SSLObject, name: str | None, _context: ssl.SSLContext) -> None:
        server_names.append(name)

    tls.sni_callback = record_server_name
    server = LocalServer(tls=tls)
    await server.start()
    transport = RecordingTransport(verify=authority.client_context())
    resolver = RecordingResolver({"internal-api.example": ["127.0.0.1"]})
    url = server.url("/host", host="internal-api.example")
    try:
        if trusted:
            result = await http_get(url, context(transport, resolver), allowed_hosts=["internal-api.example"])
            assert result["body"] == f"internal-api.example:{server.port}"
        else:
            with pytest.raises(ToolError, match="could not connect"):
                await http_get(url, context(transport, resolver), allowed_hosts=["internal-api.example"])
    finally:
        await transport.aclose()
        await server.stop()
    assert transport.requests[0].url.host == "127.0.0.1"
    assert server_names == ["internal-api.example"]


async def test_default_transport_ignores_proxy_variables_and_follows_redirects(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Port 9 (discard) on loopback: if the proxy were used, the call would fail.
    for variable in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(variable, "http://127.0.0.1:9")
    result = await http_get(server.url("/redirect/1"), ToolContext(), **LOCAL)
    assert result["body"] == "arrived"
    assert [r.path for r in server.requests] == ["/redirect/1", "/redirect/0"]
