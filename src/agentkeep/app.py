"""The application factory. Everything stateful is created in the lifespan, per app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from agentkeep import __version__
from agentkeep.api import mount_routers
from agentkeep.apikeys.repository import KeyState
from agentkeep.apikeys.secret import ApiKeyHasher
from agentkeep.audit.commit_signal import attach_commit_signal
from agentkeep.audit.listeners import rate_limited_recorder
from agentkeep.audit.sealing import AuditSealer
from agentkeep.auth.principal_cache import PrincipalCache
from agentkeep.auth.repository import SessionState
from agentkeep.config import Settings
from agentkeep.console.router import mount_console
from agentkeep.db.engine import create_engine, create_sessionmaker
from agentkeep.db.session import create_read_sessionmaker
from agentkeep.errors import install_error_handlers
from agentkeep.heap import freeze_after
from agentkeep.idempotency.purge import IdempotencyPurger
from agentkeep.notify.announce import hub_of_engine
from agentkeep.notify.listener import listen_for
from agentkeep.observability.metrics import UNMATCHED_ROUTE, Metrics
from agentkeep.observability.middleware import RequestMiddleware, UnhandledErrorMiddleware, request_id_for
from agentkeep.observability.tracing import Tracing
from agentkeep.openapi import install_openapi
from agentkeep.profile import relaxed_safeguards
from agentkeep.ratelimit.limiter import RateLimiter
from agentkeep.ratelimit.lockout import LoginThrottle
from agentkeep.redis_client import create_redis
from agentkeep.security.body_limit import BodyLimitMiddleware
from agentkeep.security.client_ip import parse_networks
from agentkeep.security.headers import security_headers
from agentkeep.security.hosts import AllowedHostsMiddleware
from agentkeep.security.in_flight import InFlightGate, InFlightLimit
from agentkeep.security.passwords import PasswordHasher, default_concurrency
from agentkeep.security.secretbox import secretbox_from_settings
from agentkeep.security.tokens import TokenCodec
from agentkeep.sso.client import build_clients
from agentkeep.webhooks.dispatch import background_delivery
from agentkeep.worker.runtime import RunExecution

logger = structlog.get_logger("agentkeep.app")

CORS_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
CORS_HEADERS = [
    "Authorization",
    "X-API-Key",
    "Content-Type",
    "Idempotency-Key",
    "X-Request-ID",
    "Last-Event-ID",
]
CORS_EXPOSED = ["X-Request-ID", "Retry-After", "RateLimit", "RateLimit-Policy", "Location"]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    engine = create_engine(settings)
    app.state.engine = engine
    app.state.sessionmaker = create_sessionmaker(engine)
    app.state.hub = hub_of_engine(engine)
    # Callers resolved in the last second; any revocation empties them on every instance.
    app.state.session_cache = PrincipalCache[SessionState]()
    app.state.session_cache.watch(app.state.hub)
    app.state.key_cache = PrincipalCache[KeyState]()
    app.state.key_cache.watch(app.state.hub)
    notify_listener = listen_for(engine, settings)
    tracing: Tracing | None = app.state.tracing
    if tracing is not None:
        tracing.start()
        tracing.instrument_engine(engine)
    app.state.redis = create_redis(settings.redis_url.get_secret_value()) if settings.redis_url else None
    for safeguard in relaxed_safeguards(settings):
        logger.warning("safeguard_off", detail=safeguard)
    app.state.token_codec = TokenCodec.from_settings(settings)
    app.state.api_key_hasher = ApiKeyHasher.from_settings(settings)
    app.state.secretbox = secretbox_from_settings(settings)
    app.state.password_hasher = PasswordHasher(default_concurrency(settings.password_hash_concurrency))
    await app.state.password_hasher.prepare()
    app.state.rate_limiter = RateLimiter.from_settings(settings)
    await app.state.rate_limiter.start()
    app.state.rate_limiter.storage.on_outage = app.state.metrics.rate_limit_fallbacks.inc
    app.state.rate_limiter.add_listener(rate_limited_recorder(app.state.sessionmaker, app.state.metrics))
    app.state.oidc_clients = build_clients(settings)
    app.state.login_throttle = LoginThrottle(app.state.rate_limiter, settings.account_lockout_seconds)
    # Chains audit records after commit; refuses (and counts) records whose MAC does not verify.
    tamper = app.state.metrics.audit_tamper_detected
    app.state.audit_sealer = AuditSealer.from_settings(
        settings, on_tamper=lambda reason: tamper.labels(reason).inc()
    )
    app.state.audit_sealer.start()
    # A commit with audit records wakes it; records of other processes wait for its poll.
    attach_commit_signal(engine, app.state.audit_sealer.wake)
    # Safe requests read without BEGIN/COMMIT on PostgreSQL; built once the engine's
    # execution options are complete (it copies them).
    app.state.read_sessionmaker = create_read_sessionmaker(engine)
    app.state.idempotency_purger = IdempotencyPurger(app.state.sessionmaker)  # expired keys
    app.state.idempotency_purger.start()
    execution = RunExecution(settings, app.state.sessionmaker, app.state.metrics)
    app.state.run_queue = await execution.start()
    webhooks = None
    if execution.mode == "inprocess":  # with a job queue, `agentkeep worker` delivers
        webhooks = background_delivery(app.state.sessionmaker, settings, "inprocess", app.state.metrics)
        webhooks.start()
    freezing = None
    if app.state.freeze_heap:
        freezing = asyncio.create_task(freeze_after(execution.prepared()), name="freeze-startup-heap")
    logger.info(
        "started",
        environment=settings.environment,
        database=engine.dialect.name,
        redis=app.state.redis is not None,
        run_execution=execution.mode,
    )
    try:
        yield
    finally:
        if freezing is not None:
            freezing.cancel()
        await app.state.idempotency_purger.stop()
        await execution.stop()  # running runs finish or are handed back first
        if webhooks is not None:
            await webhooks.stop()  # pending deliveries stay in the outbox for the next start
        await app.state.audit_sealer.stop()  # then the last audit records are sealed
        if notify_listener is not None:
            await notify_listener.stop()
        app.state.password_hasher.close()
        await app.state.rate_limiter.close()
        if app.state.redis is not None:
            await app.state.redis.aclose()
        await engine.dispose()
        if tracing is not None:
            # Flushes the spans still batched; bounded by the exporter's timeout.
            await asyncio.to_thread(tracing.shutdown)
        logger.info("stopped")


class AgentKeepAPI(FastAPI):
    """FastAPI behind the admission gate (security/in_flight.py), which sits outside
    everything else, Starlette's own error and exception layers (and tracing) included: a
    refusal costs next to nothing. Built on the first call, once the app's state is set."""

    _gate: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._gate is None:
            self._gate = self._admission_gate()
        await self._gate(scope, receive, send)

    def _admission_gate(self) -> ASGIApp:
        settings: Settings = self.state.settings
        metrics: Metrics = self.state.metrics

        def count_refused(method: str) -> None:
            metrics.http_requests.labels(UNMATCHED_ROUTE, method, "503").inc()

        return InFlightGate(
            super().__call__,
            self.state.requests_in_flight,
            max_body_bytes=settings.max_body_bytes,
            request_id=request_id_for,
            static_headers=security_headers(hsts=settings.environment == "production"),
            cors_origins=settings.cors_origins,
            cors_expose=CORS_EXPOSED,
            on_refused_request=count_refused,
        )


def create_app(settings: Settings, *, freeze_heap: bool = False) -> FastAPI:
    """Build an AgentKeep application for `settings` (already validated).

    `freeze_heap`: the process serves this one application for its whole life, so what
    startup allocated is frozen out of garbage collection (agentkeep.heap).
    """
    docs = settings.api_docs_enabled
    app = AgentKeepAPI(
        title="AgentKeep",
        version=__version__,
        summary="A secure, self-hostable control plane for AI agents.",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.settings = settings
    app.state.freeze_heap = freeze_heap
    app.state.metrics = Metrics()
    app.state.trusted_proxies = parse_networks(settings.trusted_proxies)
    install_error_handlers(app)
    mount_routers(app)
    mount_console(app)  # after the API's routes: its pages never shadow an API path
    install_openapi(app)
    # Added innermost first: CORS wraps even a 500, the per-request layer (request id,
    # security headers, metrics, access line) wraps everything but the admission gate,
    # which AgentKeepAPI puts outside all of them.
    app.add_middleware(UnhandledErrorMiddleware)
    app.state.requests_in_flight = InFlightLimit(
        settings.max_requests_in_flight, on_refusal=lambda: app.state.metrics.overload_refusals.inc()
    )
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_credentials=True,
        allow_methods=CORS_METHODS,
        allow_headers=CORS_HEADERS,
        expose_headers=CORS_EXPOSED,
        max_age=600,
    )
    if settings.allowed_hosts:
        app.add_middleware(AllowedHostsMiddleware, allowed_hosts=settings.allowed_hosts)
    app.add_middleware(
        RequestMiddleware, metrics_of=lambda: app.state.metrics, hsts=settings.environment == "production"
    )
    app.state.tracing = Tracing.for_settings(settings)
    if app.state.tracing is not None:
        # Outermost but for the admission gate: a request's span covers every middleware,
        # rejections included (not the gate's refusals: they are counted, not traced).
        app.state.tracing.instrument_app(app)
    return app


def app_from_environment() -> FastAPI:
    """Factory for `uvicorn --factory` and multi-worker serving: settings from the environment."""
    from agentkeep.config import load_settings
    from agentkeep.observability.logging import configure_logging

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings, freeze_heap=True)
