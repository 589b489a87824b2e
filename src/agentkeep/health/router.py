"""Liveness and readiness probes (public: they reveal nothing but up or down)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from agentkeep.dependencies import EngineDep, RedisDep, SettingsDep
from agentkeep.health import service
from agentkeep.health.schemas import HealthReport, LiveReport

router = APIRouter(tags=["health"])

_READY_RESPONSES: dict[int | str, dict[str, object]] = {
    503: {"model": HealthReport, "description": "A dependency failed its check"}
}


async def _ready(
    response: Response, engine: EngineDep, redis: RedisDep, settings: SettingsDep
) -> HealthReport:
    report = await service.readiness(engine, redis, settings.health_check_timeout)
    response.headers["Cache-Control"] = "no-store"
    if report.status == "fail":
        response.status_code = 503
    return report


@router.get("/health", response_model=HealthReport, responses=_READY_RESPONSES)
async def health(
    response: Response, engine: EngineDep, redis: RedisDep, settings: SettingsDep
) -> HealthReport:
    """Check the database (and Redis when configured); 503 when one of them fails."""
    return await _ready(response, engine, redis, settings)


@router.get("/health/ready", response_model=HealthReport, responses=_READY_RESPONSES)
async def ready(
    response: Response, engine: EngineDep, redis: RedisDep, settings: SettingsDep
) -> HealthReport:
    """Readiness probe for load balancers: the same checks as /health."""
    return await _ready(response, engine, redis, settings)


@router.get("/health/live", response_model=LiveReport)
async def live() -> LiveReport:
    """Liveness probe: the process answers; no dependency is touched."""
    return LiveReport()
