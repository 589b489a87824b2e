"""Optional OpenTelemetry tracing: spans for every request and SQL statement, exported over
OTLP/HTTP to OTEL_EXPORTER_OTLP_ENDPOINT.

The packages come with the `otel` extra (`pip install 'agentkeep[otel]'`) and are imported
only when the endpoint is set; a set endpoint without them is a configuration problem, so
the process refuses to start instead of running silently untraced. Each app gets its own
tracer provider (nothing global): tests and several apps in one process never share spans.
The standard OTEL_* variables the SDK reads itself (OTEL_EXPORTER_OTLP_HEADERS for a
collector's credentials, OTEL_RESOURCE_ATTRIBUTES, ...) keep working.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import TracerProvider
    from sqlalchemy.ext.asyncio import AsyncEngine

    from agentkeep.config import Settings

TRACING_MODULES = (
    "opentelemetry.sdk.trace",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.instrumentation.fastapi",
    "opentelemetry.instrumentation.sqlalchemy.engine",
)
MISSING_EXTRA = (
    "OTEL_EXPORTER_OTLP_ENDPOINT: set, but the tracing packages are not installed; "
    "install them with `pip install 'agentkeep[otel]'` (or unset the variable)"
)
TRACES_PATH = "/v1/traces"
# Probes and scrapes every few seconds would drown the traces people look for.
EXCLUDED_URLS = r"/health/live$,/health/ready$,/metrics$"
EXPORT_TIMEOUT_SECONDS = 5


def tracing_available() -> bool:
    try:
        for name in TRACING_MODULES:
            importlib.import_module(name)
    except ImportError:
        return False
    return True


def traces_url(endpoint: str) -> str:
    """OTLP/HTTP convention: the variable names the collector's base URL; traces go to /v1/traces."""
    return endpoint.rstrip("/") + TRACES_PATH


class Tracing:
    """The app's tracer provider. `instrument_app` at build time (it adds middleware);
    `start` and `instrument_engine` in the lifespan; `shutdown` flushes what is pending."""

    def __init__(self, provider: TracerProvider, endpoint: str) -> None:
        self.provider = provider
        self.endpoint = endpoint

    @classmethod
    def for_settings(cls, settings: Settings) -> Tracing | None:
        if settings.otel_exporter_otlp_endpoint is None:
            return None
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider

        resource = Resource.create({SERVICE_NAME: settings.otel_service_name})
        return cls(TracerProvider(resource=resource), traces_url(settings.otel_exporter_otlp_endpoint))

    def instrument_app(self, app: FastAPI) -> None:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(
            app, tracer_provider=self.provider, excluded_urls=EXCLUDED_URLS, exclude_spans=["receive", "send"]
        )

    def start(self) -> None:
        """Begin exporting (a background thread batches spans and posts them)."""
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        exporter = OTLPSpanExporter(endpoint=self.endpoint, timeout=EXPORT_TIMEOUT_SECONDS)
        self.provider.add_span_processor(BatchSpanProcessor(exporter))

    def instrument_engine(self, engine: AsyncEngine) -> None:
        """Spans for this engine's statements (text with placeholders, never bound values).

        EngineTracer directly, not SQLAlchemyInstrumentor: the instrumentor is a process-wide
        singleton that patches create_engine, where this app wants its own engine only."""
        from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
        from opentelemetry.metrics import NoOpMeterProvider

        scope = "opentelemetry.instrumentation.sqlalchemy"
        usage = NoOpMeterProvider().get_meter(scope).create_up_down_counter("db.client.connections.usage")
        EngineTracer(self.provider.get_tracer(scope), engine.sync_engine, usage)  # type: ignore[no-untyped-call]

    def force_flush(self, timeout_millis: int = 5000) -> bool:
        return self.provider.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self.provider.shutdown()
