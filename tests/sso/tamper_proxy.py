"""An attacker in the middle: a loopback HTTP proxy in front of the real OpenID provider that
alters chosen messages in transit, to show what AgentKeep's client refuses.

The proxy keeps the Host header, so the provider builds its endpoint URLs (in discovery and
redirects) on the proxy's address and every later request passes the proxy too. Tampering:
- `jwks_from`: answer the JWKS request with another provider's keys (tokens then carry a
  signature by a key the published set does not hold);
- `issuer`: rewrite the issuer the discovery document names;
- `swap_client`: replace one client's id and credentials by another's in the authorization
  request and at the token endpoint (the ID token is then issued to the other client).
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


@dataclass
class TamperProxy:
    upstream: str
    jwks_from: str | None = None
    issuer: str | None = None
    swap_client: tuple[tuple[str, str], tuple[str, str]] | None = None
    port: int = 0
    seen_paths: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _forward(self, request: Request) -> Response:
        self.seen_paths.append(request.url.path)
        query = request.url.query
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
        body = await request.body()
        if self.swap_client is not None:
            (ours, our_secret), (theirs, their_secret) = self.swap_client
            query = query.replace(f"client_id={ours}", f"client_id={theirs}")
            headers = [
                (
                    k,
                    basic(theirs, their_secret)
                    if k.lower() == "authorization" and v == basic(ours, our_secret)
                    else v,
                )
                for k, v in headers
            ]
        if request.url.path == "/jwks" and self.jwks_from is not None:
            async with httpx.AsyncClient() as client:
                other = await client.get(self.jwks_from)
            return Response(other.content, media_type="application/json")
        async with httpx.AsyncClient(base_url=self.upstream, follow_redirects=False) as client:
            answer = await client.request(
                request.method,
                request.url.path + (f"?{query}" if query else ""),
                headers=headers,
                content=body,
            )
        content = answer.content
        if request.url.path.endswith("/.well-known/openid-configuration") and self.issuer is not None:
            document = json.loads(content)
            document["issuer"] = self.issuer
            content = json.dumps(document).encode()
        response = Response(content, status_code=answer.status_code)
        response.raw_headers = [
            (k.encode("latin-1"), v.encode("latin-1"))
            for k, v in answer.headers.multi_items()
            if k.lower() not in HOP_BY_HOP
        ] + [(b"content-length", str(len(content)).encode())]
        return response

    def app(self) -> Starlette:
        methods = ["GET", "POST"]
        return Starlette(routes=[Route("/{path:path}", self._forward, methods=methods)])


@contextlib.contextmanager
def running_proxy(proxy: TamperProxy, sock: socket.socket) -> Iterator[TamperProxy]:
    """Serve `proxy` on `sock` (bound by the caller, so the provider can be told the URL first)."""
    proxy.port = int(sock.getsockname()[1])
    config = uvicorn.Config(proxy.app(), log_level="warning", lifespan="off", ws="none", http="h11")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the tampering proxy did not start")
            time.sleep(0.01)
        yield proxy
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def bound_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock
