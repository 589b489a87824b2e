"""http_get through the agent loop: SSRF targets end as tool errors and nothing reaches a local server.

The address policy itself is tested in tests/tools; here the offline model asks for each URL
and the run shows the refusal as the tool's answer, then goes on to complete.
"""

from __future__ import annotations

from typing import Any

import pytest

from agentkeep.runs.executor import execute
from agentkeep.runs.states import EventKind, RunStatus
from agentkeep.tools.context import ToolContext
from tests.runs.helpers import ListSink, run_request
from tests.tools.fixtures import RecordingResolver, RecordingTransport
from tests.tools.local_server import LocalServer

E = EventKind


async def fetch_through_agent(
    url: str, context: ToolContext, settings: dict[str, Any] | None = None
) -> tuple[dict[str, Any], ListSink]:
    sink = ListSink()
    request = run_request(f"Please fetch {url} for me.", tools={"http_get": settings or {}})
    outcome = await execute(request, sink, tool_context=context)
    assert outcome.status == RunStatus.COMPLETED  # a refusal is the tool's answer, not a failure
    [call] = sink.of(E.TOOL_CALL)
    assert call["args"] == {"url": url}
    [result] = sink.of(E.TOOL_RESULT)
    assert outcome.output is not None
    assert outcome.output.startswith("http_get: error: ")
    return result, sink


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("http://127.0.0.1:{port}/text", "a loopback address"),
        ("http://10.0.0.1/", "a private address"),
        ("http://169.254.169.254/latest/meta-data/", "a cloud metadata address"),
    ],
)
async def test_private_and_metadata_addresses_are_refused_as_a_tool_error(
    server: LocalServer, transport: RecordingTransport, target: str, reason: str
) -> None:
    url = target.format(port=server.port)
    result, _ = await fetch_through_agent(
        url, ToolContext(http_transport=transport, resolve=RecordingResolver())
    )

    assert reason in result["error"]
    assert "result" not in result
    assert transport.requests == []
    assert server.requests == []


async def test_a_name_resolving_to_loopback_is_refused(
    server: LocalServer, transport: RecordingTransport
) -> None:
    resolver = RecordingResolver({"intranet.example.com": ["127.0.0.1"]})
    url = f"http://intranet.example.com:{server.port}/text"
    result, _ = await fetch_through_agent(url, ToolContext(http_transport=transport, resolve=resolver))

    assert "a loopback address" in result["error"]
    assert resolver.asked == ["intranet.example.com"]
    assert transport.requests == []
    assert server.requests == []


async def test_a_redirect_to_loopback_is_refused_before_the_second_hop(
    server: LocalServer, transport: RecordingTransport
) -> None:
    # The first host is allowlisted (an internal API the agent may use); its redirect to a
    # loopback address that is not allowlisted must not be followed.
    resolver = RecordingResolver({"api.internal.test": ["127.0.0.1"]})
    url = f"http://api.internal.test:{server.port}/to?u=http://127.0.0.1:{server.port}/text"
    result, _ = await fetch_through_agent(
        url, ToolContext(http_transport=transport, resolve=resolver), {"allowed_hosts": ["api.internal.test"]}
    )

    assert "a loopback address" in result["error"]
    assert [r.path for r in server.requests] == ["/to?u=http://127.0.0.1:" + str(server.port) + "/text"]
    assert len(transport.requests) == 1


async def test_an_allowlisted_local_host_is_fetched(
    server: LocalServer, transport: RecordingTransport
) -> None:
    sink = ListSink()
    request = run_request(
        f"Please fetch {server.url('/text')}", tools={"http_get": {"allowed_hosts": ["127.0.0.1"]}}
    )
    outcome = await execute(request, sink, tool_context=ToolContext(http_transport=transport))

    assert outcome.status == RunStatus.COMPLETED
    [result] = sink.of(E.TOOL_RESULT)
    assert result["result"]["status"] == 200
    assert outcome.output is not None
    assert "hello from the test server" in outcome.output
    assert len(server.requests) == 1
