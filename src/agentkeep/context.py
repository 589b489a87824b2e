"""Who and where a request comes from, handed to services (which never see HTTP objects)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from agentkeep.errors import request_id_of
from agentkeep.security.client_ip import resolve_client_ip

USER_AGENT_MAX = 512


@dataclass(frozen=True, slots=True)
class RequestContext:
    request_id: str | None
    ip_address: str | None
    user_agent: str | None

    @classmethod
    def system(cls) -> RequestContext:
        """Context for work that no HTTP request started (CLI, workers)."""
        return cls(request_id=None, ip_address=None, user_agent=None)


def request_context(request: Request) -> RequestContext:
    """Who and where `request` comes from (a plain call, for code on the hot path)."""
    proxies = request.app.state.trusted_proxies
    peer = request.client.host if request.client else None
    ip = resolve_client_ip(peer, request.headers.getlist("x-forwarded-for"), proxies)
    agent = request.headers.get("user-agent")
    return RequestContext(
        request_id=request_id_of(request),
        ip_address=ip,
        user_agent=agent[:USER_AGENT_MAX] if agent else None,
    )


async def get_request_context(request: Request) -> RequestContext:
    return request_context(request)


RequestContextDep = Annotated[RequestContext, Depends(get_request_context)]
