"""Readiness checks: each dependency probed with its own short timeout, all in parallel."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import structlog
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from agentkeep.db.faults import classify
from agentkeep.health.schemas import CheckResult, CheckStatus, HealthReport

logger = structlog.get_logger("agentkeep.health")


async def _timed(probe: Callable[[], Awaitable[object]], seconds: float) -> CheckResult:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(seconds):
            await probe()
    except TimeoutError:
        error: str | None = f"no answer within {seconds:g}s"
    except Exception as exc:  # any failure of the dependency is a failed check, not a 500
        fault = classify(exc)
        # What a database failure means (server_restarting, connection_lost) tells an
        # operator more than a driver's class name.
        error = fault.kind if fault is not None else type(exc).__name__
    else:
        error = None
    latency = round((time.perf_counter() - started) * 1000, 2)
    return CheckResult(status="fail" if error else "ok", latency_ms=latency, error=error)


async def check_database(engine: AsyncEngine, seconds: float) -> CheckResult:
    async def probe() -> None:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    return await _timed(probe, seconds)


async def check_redis(redis: Redis, seconds: float) -> CheckResult:
    async def probe() -> None:
        await redis.ping()

    return await _timed(probe, seconds)


def _degrade(result: CheckResult, limiter_degraded: bool) -> CheckResult:
    """Redis has fallbacks (rate limits fall back to process memory): its failure degrades
    the service instead of failing it."""
    if result.status == "fail":
        return result.model_copy(update={"status": "degraded"})
    if limiter_degraded:
        return result.model_copy(update={"status": "degraded", "error": "rate limiter on its fallback"})
    return result


async def readiness(
    engine: AsyncEngine, redis: Redis | None, seconds: float, *, limiter_degraded: bool = False
) -> HealthReport:
    """Fail (503) when the database fails; degraded (200) when only Redis does."""
    names = ["database"]
    probes = [check_database(engine, seconds)]
    if redis is not None:
        names.append("redis")
        probes.append(check_redis(redis, seconds))
    results = dict(zip(names, await asyncio.gather(*probes), strict=True))
    if "redis" in results:
        results["redis"] = _degrade(results["redis"], limiter_degraded)
    unhealthy = {name: result.status for name, result in results.items() if result.status != "ok"}
    if unhealthy:
        logger.warning("readiness_not_ok", checks=unhealthy)
    if results["database"].status == "fail":
        status: CheckStatus = "fail"
    elif unhealthy:
        status = "degraded"
    else:
        status = "ok"
    return HealthReport(status=status, checks=results)
