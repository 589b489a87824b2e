"""Prometheus metrics, one registry per app, correct under several uvicorn workers.

With PROMETHEUS_MULTIPROC_DIR set (`agentkeep serve --workers N` sets it), every process
writes its samples to files there and a scrape of any worker aggregates all of them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import Scope

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED_ROUTE = "<unmatched>"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
RUN_DURATION_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


def multiprocess_enabled() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


class Metrics:
    """Every metric AgentKeep exports. Domains increment these through app.state.metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.http_requests = Counter(
            "agentkeep_http_requests_total",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.http_latency = Histogram(
            "agentkeep_http_request_duration_seconds",
            "HTTP request latency by route template and method.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.overload_refusals = Counter(
            "agentkeep_http_overload_refusals_total",
            "Requests answered 503 at once because MAX_REQUESTS_IN_FLIGHT were in flight.",
            registry=registry,
        )
        self.db_pool = Gauge(
            "agentkeep_db_pool_connections",
            "Database pool connections by state (size, checked_out, overflow).",
            ["state"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.logins = Counter(
            "agentkeep_logins_total", "Login attempts by outcome.", ["outcome"], registry=registry
        )
        self.rate_limit_decisions = Counter(
            "agentkeep_rate_limit_decisions_total",
            "Rate-limit decisions by rule and outcome (allowed, limited).",
            ["rule", "outcome"],
            registry=registry,
        )
        self.rate_limit_fallbacks = Counter(
            "agentkeep_rate_limit_fallbacks_total",
            "Times the limiter fell back from Redis to in-process memory.",
            registry=registry,
        )
        self.audit_records = Counter(
            "agentkeep_audit_records_total", "Audit records written by action.", ["action"], registry=registry
        )
        self.audit_failures = Counter(
            "agentkeep_audit_write_failures_total", "Audit writes that failed.", registry=registry
        )
        self.audit_tamper_detected = Counter(
            "agentkeep_audit_tamper_detected_total",
            "Pending audit records the sealer refused because their MAC did not verify, by reason.",
            ["reason"],
            registry=registry,
        )
        # Counted by the process that finished the run: `serve` (in-process runner) or a worker.
        self.runs_finished = Counter(
            "agentkeep_runs_finished_total",
            "Runs finished, by final status and stop reason.",
            ["status", "stop_reason"],
            registry=registry,
        )
        self.run_duration = Histogram(
            "agentkeep_run_duration_seconds",
            "Time from a run's first start to its end, by final status.",
            ["status"],
            buckets=RUN_DURATION_BUCKETS,
            registry=registry,
        )
        self.run_tokens = Counter(
            "agentkeep_run_tokens_total",
            "Model tokens used by runs, by kind (input, output).",
            ["kind"],
            registry=registry,
        )
        # Read from the database at scrape time; whichever process answered last is current.
        self.runs_by_status = Gauge(
            "agentkeep_runs",
            "Runs in the database by status.",
            ["status"],
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.run_queue_depth = Gauge(
            "agentkeep_run_queue_depth",
            "Runs waiting to be executed (status queued).",
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.run_queue_oldest_age = Gauge(
            "agentkeep_run_queue_oldest_age_seconds",
            "Seconds since the oldest queued run was created (0 when none waits).",
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        # Registered on the first report, which comes only with a job queue (PostgreSQL): with
        # in-process execution serve runs runs itself, and a constant 0 would page somebody.
        self.workers_alive: Gauge | None = None
        self.audit_unsealed_oldest_age = Gauge(
            "agentkeep_audit_unsealed_oldest_age_seconds",
            "Seconds the oldest audit record waiting to be sealed has waited (0 when none): the sealing lag.",
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.audit_refused_records = Gauge(
            "agentkeep_audit_refused_records",
            "Audit records the sealer refused (MAC did not verify) still in the table: verify fails.",
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.webhook_deliveries = Counter(
            "agentkeep_webhook_deliveries_total",
            "Webhook delivery attempts by outcome (succeeded, retrying, failed).",
            ["outcome"],
            registry=registry,
        )
        self.webhook_delivery_lag = Histogram(
            "agentkeep_webhook_delivery_lag_seconds",
            "How late webhook delivery attempts start after they were due (queue lag).",
            buckets=(*LATENCY_BUCKETS, 30.0, 60.0, 300.0, 900.0),
            registry=registry,
        )
        self.webhooks_disabled = Counter(
            "agentkeep_webhooks_disabled_total",
            "Webhooks disabled after WEBHOOK_DISABLE_AFTER_FAILURES deliveries failed in a row.",
            registry=registry,
        )

    def observe_pool(self, engine: AsyncEngine) -> None:
        pool = engine.sync_engine.pool
        for state, reader in (("size", "size"), ("checked_out", "checkedout"), ("overflow", "overflow")):
            read = getattr(pool, reader, None)
            if callable(read):
                self.db_pool.labels(state).set(max(0, int(read())))

    def observe_run_finished(
        self, status: str, stop_reason: str, seconds: float, input_tokens: int, output_tokens: int
    ) -> None:
        self.runs_finished.labels(status, stop_reason).inc()
        self.run_duration.labels(status).observe(max(0.0, seconds))
        self.run_tokens.labels("input").inc(max(0, input_tokens))
        self.run_tokens.labels("output").inc(max(0, output_tokens))

    def set_run_counts(self, counts: Mapping[str, int], statuses: Iterable[str]) -> None:
        """Runs per status (every known status reported, zero included) and the queue depth."""
        for status in statuses:
            self.runs_by_status.labels(status).set(counts.get(status, 0))
        self.run_queue_depth.set(counts.get("queued", 0))

    def set_run_queue(self, oldest_age: float, workers_alive: int | None) -> None:
        """The queue's oldest wait, and the live workers (None: no job queue, nothing exported)."""
        self.run_queue_oldest_age.set(max(0.0, oldest_age))
        if workers_alive is None:
            return
        if self.workers_alive is None:
            self.workers_alive = Gauge(
                "agentkeep_workers_alive",
                "`agentkeep worker` processes whose job-queue heartbeat is recent.",
                registry=self.registry,
                multiprocess_mode="mostrecent",
            )
        self.workers_alive.set(workers_alive)

    def set_audit_backlog(self, oldest_unsealed_age: float, refused: int) -> None:
        self.audit_unsealed_oldest_age.set(max(0.0, oldest_unsealed_age))
        self.audit_refused_records.set(refused)

    def render(self) -> tuple[bytes, str]:
        if multiprocess_enabled():
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def route_template(scope: Scope) -> str:
    """The route a request matched, as its template (`/api/agents/{agent_id}`): metric labels
    and log fields never carry ids."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE
