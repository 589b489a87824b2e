"""A real MCP server for the tests, built with the `mcp` SDK's server side, run in its own process:

    python -m tests.mcp.mcp_server --port 8123 --toolbox calc --header X-Api-Key=VALUE

Streamable HTTP at /mcp and SSE at /sse (+ /messages/). With `--header NAME=VALUE`, every MCP
request without exactly that header is refused with 401, so a test that lists tools proves
the header was sent. Beside MCP, for the failure tests:
- /stats: how many MCP requests came with the header and without it, and the tool calls;
- /garbage: 200 with an HTML page, not MCP;
- /slow: answers nothing for a minute;
- /away: a 307 redirect to the same port on 127.0.0.2 (another loopback address);
- /sse-away: the same for an SSE client (a 302).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections import Counter
from typing import Any

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings

Scope = dict[str, Any]
Receive = Any
Send = Any

stats: Counter[str] = Counter()


def calc_server() -> MCPServer:
    server = MCPServer("calc")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        stats["call:add"] += 1
        return a + b

    @server.tool()
    def multiply(a: int, b: int) -> int:
        """Multiply two integers."""
        stats["call:multiply"] += 1
        return a * b

    @server.tool()
    def explode(reason: str) -> str:
        """Always fails, with the reason given."""
        stats["call:explode"] += 1
        raise ValueError(f"exploded: {reason}")

    return server


def weather_server() -> MCPServer:
    server = MCPServer("weather")

    @server.tool()
    def forecast(city: str, days: int = 1) -> str:
        """The weather forecast for a city."""
        stats["call:forecast"] += 1
        return f"{city}: sunny for {days} day(s)"

    return server


TOOLBOXES = {"calc": calc_server, "weather": weather_server}


async def _respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def build_app(server: MCPServer, port: int, header: tuple[str, str] | None) -> Any:
    # The SDK guards loopback servers against DNS rebinding by the Host header; the tests reach
    # this one by other names too (a test DNS name), so the check is left to the tests.
    security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
    streamable = server.streamable_http_app(transport_security=security)
    sse = server.sse_app(transport_security=security)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await streamable(scope, receive, send)
            return
        path = scope["path"]
        if path == "/stats":
            await _respond(send, 200, json.dumps(stats).encode(), [(b"content-type", b"application/json")])
            return
        if path == "/garbage":
            await _respond(send, 200, b"<html>not mcp</html>", [(b"content-type", b"text/html")])
            return
        if path == "/slow":
            await asyncio.sleep(60)
            return
        if path in ("/away", "/sse-away"):
            target = f"http://127.0.0.2:{port}/{'mcp' if path == '/away' else 'sse'}".encode()
            await _respond(send, 307 if path == "/away" else 302, b"", [(b"location", target)])
            return
        if header is not None:
            sent = dict(scope["headers"]).get(header[0].lower().encode())
            if sent != header[1].encode():
                stats["requests_without_header"] += 1
                await _respond(
                    send, 401, b'{"error": "unauthorized"}', [(b"content-type", b"application/json")]
                )
                return
            stats["requests_with_header"] += 1
        if path == "/mcp" or path.startswith("/mcp/"):
            await streamable(scope, receive, send)
        else:
            await sse(scope, receive, send)

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--toolbox", choices=sorted(TOOLBOXES), required=True)
    parser.add_argument("--header", help="NAME=VALUE every MCP request must carry")
    args = parser.parse_args()
    header = tuple(args.header.split("=", 1)) if args.header else None
    app = build_app(TOOLBOXES[args.toolbox](), args.port, header)
    # A /slow request still open must not hold up the stop.
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", timeout_graceful_shutdown=1)


if __name__ == "__main__":
    main()
