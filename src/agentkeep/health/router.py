"""Liveness and readiness probes (public: they reveal nothing but up or down)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from agentkeep.db.faults import OUTAGE_RETRY_AFTER_SECONDS
from agentkeep.dependencies import EngineDep, RedisDep, SettingsDep
from agentkeep.health import service
from agentkeep.health.schemas import HealthReport, LiveReport
from agentkeep.rbac.dependencies import Public
from agentkeep.serving import is_draining

router = APIRouter(tags=["health"], dependencies=[Public])

_READY_RESPONSES: dict[int | str, dict[str, object]] = {
    503: {"model": HealthReport, "description": "The database failed its check, or the process is draining"}
}


async def _ready(
    request: Request, response: Response, engine: EngineDep, redis: RedisDep, settings: SettingsDep
) -> HealthReport:
    response.headers["Cache-Control"] = "no-store"
    if is_draining(request.app):
        # Shutting down: take this instance out of rotation without probing anything.
        response.status_code = 503
        return HealthReport(status="draining", checks={})
    limiter = getattr(request.app.state, "rate_limiter", None)
    report = await service.readiness(
        engine,
        redis,
        settings.health_check_timeout,
        limiter_degraded=limiter is not None and limiter.degraded,
    )
    if report.status == "fail":
        response.status_code = 503
        # Like every other answer during a database outage: clients may retry after this.
        response.headers["Retry-After"] = str(OUTAGE_RETRY_AFTER_SECONDS)
    return report


@router.get("/health", response_model=HealthReport, responses=_READY_RESPONSES)
async def health(
    request: Request, response: Response, engine: EngineDep, redis: RedisDep, settings: SettingsDep
) -> HealthReport:
    """Check the database (and Redis when configured); 503 when the database fails or the
    process is draining, 200 with `degraded` when only Redis does (limits then per instance)."""
    return await _ready(request, response, engine, redis, settings)


@router.get("/health/ready", response_model=HealthReport, responses=_READY_RESPONSES)
async def ready(
    request: Request, response: Response, engine: EngineDep, redis: RedisDep, settings: SettingsDep
) -> HealthReport:
    """Readiness probe for load balancers: the same checks as /health."""
    return await _ready(request, response, engine, redis, settings)


@router.get("/health/live", response_model=LiveReport)
async def live() -> LiveReport:
    """Liveness probe: the process answers; no dependency is touched."""
    return LiveReport()
