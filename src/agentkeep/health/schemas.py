from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

CheckStatus = Literal["ok", "fail", "degraded"]


class CheckResult(BaseModel):
    status: CheckStatus
    latency_ms: float
    error: str | None = None


class HealthReport(BaseModel):
    status: CheckStatus
    checks: dict[str, CheckResult]


class LiveReport(BaseModel):
    status: Literal["ok"] = "ok"
