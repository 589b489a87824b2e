"""GET /metrics: Prometheus text, for a bearer METRICS_TOKEN or, without one, loopback only."""

from __future__ import annotations

import hmac
import ipaddress

from fastapi import APIRouter, Request, Response

from agentkeep.audit.backlog import refresh_audit_gauges
from agentkeep.context import RequestContextDep
from agentkeep.dependencies import EngineDep, SettingsDep
from agentkeep.errors import Forbidden, Unauthorized
from agentkeep.observability.metrics import Metrics
from agentkeep.rbac.dependencies import Public
from agentkeep.worker.reporting import refresh_run_gauges
from agentkeep.worker.runtime import execution_mode

router = APIRouter(tags=["observability"], dependencies=[Public])


def _is_loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


@router.get("/metrics", response_class=Response, include_in_schema=False)
async def metrics(
    request: Request, settings: SettingsDep, engine: EngineDep, context: RequestContextDep
) -> Response:
    """Prometheus metrics of every worker process."""
    if settings.metrics_token is not None:
        supplied = request.headers.get("authorization", "")
        expected = f"Bearer {settings.metrics_token.get_secret_value()}"
        if not hmac.compare_digest(supplied.encode(), expected.encode()):
            raise Unauthorized("A valid metrics token is required.", headers={"WWW-Authenticate": "Bearer"})
    elif not _is_loopback(context.ip_address):
        raise Forbidden("Without METRICS_TOKEN, metrics are served to loopback clients only.")
    registry: Metrics = request.app.state.metrics
    registry.observe_pool(engine)
    sessionmaker = request.app.state.sessionmaker
    await refresh_run_gauges(sessionmaker, registry, job_queue=execution_mode(settings) == "queue")
    await refresh_audit_gauges(sessionmaker, registry)
    body, content_type = registry.render()
    return Response(body, media_type=content_type, headers={"Cache-Control": "no-store"})
