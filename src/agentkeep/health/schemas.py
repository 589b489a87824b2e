from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

CheckStatus = Literal["ok", "fail", "degraded"]
# `draining`: the process received SIGTERM and is finishing its in-flight requests.
ReportStatus = Literal["ok", "fail", "degraded", "draining"]


class CheckResult(BaseModel):
    status: CheckStatus
    latency_ms: float
    error: str | None = None


class HealthReport(BaseModel):
    status: ReportStatus
    checks: dict[str, CheckResult]


class LiveReport(BaseModel):
    status: Literal["ok"] = "ok"
