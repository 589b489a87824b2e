"""Mounts every domain router on the application."""

from __future__ import annotations

from fastapi import FastAPI

from agentkeep.agents.router import router as agents_router
from agentkeep.apikeys.router import router as apikeys_router
from agentkeep.approvals.router import router as approvals_router
from agentkeep.audit.router import router as audit_router
from agentkeep.auth.router import router as auth_router
from agentkeep.health.router import router as health_router
from agentkeep.mcp.router import router as mcp_router
from agentkeep.observability.router import router as observability_router
from agentkeep.orgs.router import router as orgs_router
from agentkeep.providers.router import router as providers_router
from agentkeep.runs.router import router as runs_router
from agentkeep.sso.router import router as sso_router
from agentkeep.threads.router import router as threads_router
from agentkeep.usage.router import router as usage_router
from agentkeep.users.router import router as users_router
from agentkeep.webhooks.router import router as webhooks_router


def mount_routers(app: FastAPI) -> None:
    """Routers in the order requests are matched: FastAPI tries each included router's routes
    in turn until one matches, a cost every request pays for the routers before its own
    (bench/README.md, "Routing order"). Probes first, then the busiest paths: agents, their
    runs and event streams, approvals and threads; the rest in the order of the API's
    sections. Routers that share a path prefix keep their order relative to each other."""
    app.include_router(health_router)
    app.include_router(agents_router)
    app.include_router(runs_router)
    app.include_router(approvals_router)
    app.include_router(threads_router)
    app.include_router(observability_router)
    app.include_router(auth_router)
    app.include_router(sso_router)
    app.include_router(audit_router)
    app.include_router(orgs_router)
    app.include_router(users_router)
    app.include_router(apikeys_router)
    app.include_router(providers_router)
    app.include_router(mcp_router)
    app.include_router(webhooks_router)
    app.include_router(usage_router)
