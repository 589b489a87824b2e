"""Settings read from the environment (and an optional `.env`), with every safety rule.

Nothing here performs I/O beyond reading the environment: the rules are pure so that
`agentkeep check-config`, `serve` and the tests all apply exactly the same ones.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from limits import RateLimitItem, parse_many
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from agentkeep.audit.keys import decode_key_material
from agentkeep.observability.tracing import MISSING_EXTRA, tracing_available
from agentkeep.profile import relaxed_safeguards
from agentkeep.security.client_ip import parse_networks
from agentkeep.security.secretbox import validate_keys
from agentkeep.sso.settings import OidcProviderConfig, production_problems, provider_problems

MIN_SECRET_LENGTH = 32

# Values that appear in documentation, examples and tutorials: a secret equal to one of
# these is public knowledge, whatever its length.
PLACEHOLDER_SECRETS = frozenset(
    {
        "your-secret-key-change-in-production",
        "change-me-to-a-random-string-of-at-least-32-characters",
        "replace-with-output-of-agentkeep-gen-secret",
        "changeme",
        "change-me",
        "change_me",
        "secret",
        "your-secret-key",
        "your_secret_key",
        "supersecret",
        "jwt-secret",
        "jwt_secret",
        "password",
        "development",
        "test",
    }
)

SQLITE_DRIVER = "sqlite+aiosqlite"
POSTGRES_DRIVER = "postgresql+asyncpg"
_DRIVER_ALIASES = {
    "sqlite": SQLITE_DRIVER,
    "sqlite+aiosqlite": SQLITE_DRIVER,
    "postgres": POSTGRES_DRIVER,
    "postgresql": POSTGRES_DRIVER,
    "postgresql+asyncpg": POSTGRES_DRIVER,
}
_ORIGIN_RE = re.compile(r"^https?://[A-Za-z0-9.\-]+(:\d{1,5})?$|^https?://\[[0-9A-Fa-f:.]+\](:\d{1,5})?$")

_HOST_RE = re.compile(r"^(\*\.)?[A-Za-z0-9]([A-Za-z0-9\-.]{0,251}[A-Za-z0-9])?$")

# Model-level rules report several problems through one ValueError, split again for display.
_MULTI_PROBLEM_SEPARATOR = "\n"

CommaList = Annotated[list[str], NoDecode]


class ConfigError(Exception):
    """The configuration is unsafe or malformed; `problems` lists every reason."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(self.render())

    def render(self) -> str:
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        return f"AgentKeep refuses to start: the configuration is not safe.\n{lines}"


def _split_commas(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def parse_rate_limit(notation: str) -> RateLimitItem:
    """Parse one limit in the `limits` notation ("5/minute", "10 per 15 minutes")."""
    try:
        items = parse_many(notation)
    except ValueError:
        raise ValueError(
            f"{notation!r} is not a rate limit; use the form '5/minute' or '10 per 15 minutes'"
        ) from None
    if len(items) != 1:
        raise ValueError(f"{notation!r} names {len(items)} limits; give exactly one")
    if items[0].amount < 1:
        raise ValueError(f"{notation!r} allows nothing; the amount must be at least 1")
    return items[0]


def normalise_database_url(raw: str) -> str:
    """Map `postgresql://` and `sqlite://` URLs to the async drivers AgentKeep uses."""
    try:
        url: URL = make_url(raw)
    except ArgumentError as exc:
        raise ValueError(f"is not a valid database URL ({exc})") from None
    driver = _DRIVER_ALIASES.get(url.drivername)
    if driver is None:
        raise ValueError(
            f"uses the unsupported driver {url.drivername!r}; "
            "use postgresql+asyncpg://... or sqlite+aiosqlite:///path"
        )
    url = url.set(drivername=driver)
    if driver == POSTGRES_DRIVER and not url.host and not url.query.get("host"):
        raise ValueError("names no host")
    if driver == POSTGRES_DRIVER and not url.database:
        raise ValueError("names no database")
    if driver == SQLITE_DRIVER and not url.database:
        raise ValueError("names no SQLite file (an in-memory database would lose every write)")
    return url.render_as_string(hide_password=False)


class Settings(BaseSettings):
    """Every setting AgentKeep reads. Field names are the environment variable names."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        validate_default=True,
    )

    environment: Literal["development", "production"] = "development"

    jwt_secret: SecretStr = SecretStr("")
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = "HS256"
    access_token_ttl_seconds: int = Field(default=900, ge=60, le=86_400)
    refresh_token_ttl_seconds: int = Field(default=14 * 86_400, ge=300, le=90 * 86_400)
    jwt_issuer: str = Field(default="agentkeep", min_length=1, max_length=256)
    jwt_audience: str = Field(default="agentkeep-api", min_length=1, max_length=256)

    # Unset: self-registration open in development, closed in production (admins create users).
    allow_registration: bool | None = None
    # Argon2 hashes running at once; each holds its memory cost (19 MiB) while it runs.
    # Unset: one per CPU.
    password_hash_concurrency: int | None = Field(default=None, ge=1, le=256)

    database_url: str = f"{SQLITE_DRIVER}:///./var/agentkeep.db"
    db_pool_size: int = Field(default=20, ge=1, le=500)
    # Off by default: an overflow connection is closed when it is returned, so a sustained
    # load above the pool size opened and closed a connection per request. Size the pool.
    db_max_overflow: int = Field(default=0, ge=0, le=1000)
    db_pool_timeout: float = Field(default=30, gt=0, le=300)
    db_pool_recycle: int = Field(default=3600, ge=30, le=86_400)
    db_command_timeout: float = Field(default=30, gt=0, le=3600)
    db_connect_timeout: float = Field(default=3, gt=0, le=300)

    redis_url: SecretStr | None = None
    # Namespaces every Redis key, so several deployments (or test runs) can share one Redis.
    redis_key_prefix: str = Field(default="agentkeep", pattern=r"^[A-Za-z0-9_\-:.]{1,64}$")

    cors_origins: CommaList = Field(default_factory=lambda: ["http://localhost:3000"])
    allowed_hosts: CommaList = Field(default_factory=list)
    trusted_proxies: CommaList = Field(default_factory=list)

    # Rate limits in the `limits` notation; see docs/ratelimit.md.
    rate_limit_auth: str = "5/minute"
    rate_limit_login_failures: str = "10/15 minutes"
    account_lockout_seconds: int = Field(default=900, ge=1, le=86_400)
    rate_limit_api: str = "600/minute"
    rate_limit_runs: str = "30/minute"
    # Redis faults (docs/ratelimit.md): a limiter call unanswered after the timeout makes the
    # limiter check that Redis is alive (a slow call alone is no outage); while Redis is down,
    # Redis is tried again every retry period, and each instance enforces 1/divisor of every
    # limit (the divisor is at least the number of instances seen in Redis before the outage).
    rate_limit_redis_timeout: float = Field(default=0.1, gt=0, le=1)
    rate_limit_redis_retry_seconds: float = Field(default=5.0, gt=0, le=300)
    rate_limit_fallback_divisor: int = Field(default=1, ge=1, le=1000)

    openai_base_url: str | None = None
    openai_api_key: SecretStr | None = None
    # Private hosts and networks (CIDR ranges, addresses, host names) that organizations'
    # model providers may reach, e.g. a self-hosted vLLM; metadata addresses never. The host
    # of OPENAI_BASE_URL is trusted without being listed (see docs/providers.md).
    provider_allowed_networks: CommaList = Field(default_factory=list)
    # Private hosts and networks that organizations' MCP tool servers may reach (an internal
    # MCP service); metadata addresses never. Nothing else private is reachable (docs/mcp.md).
    mcp_allowed_networks: CommaList = Field(default_factory=list)
    # Private hosts and networks that organizations' webhooks may be delivered to (an internal
    # receiver); metadata addresses never. Nothing else private is reachable (docs/webhooks.md).
    webhook_allowed_networks: CommaList = Field(default_factory=list)
    # Bound on one webhook request (connect, send, answer); redirects are never followed.
    webhook_timeout_seconds: float = Field(default=10, gt=0, le=60)
    # Pauses before each retry of a failed webhook delivery, in seconds, comma-separated; each
    # is jittered by up to +/-WEBHOOK_RETRY_JITTER of itself. After the last the delivery fails.
    webhook_retry_schedule: CommaList = Field(
        default_factory=lambda: ["5", "300", "1800", "7200", "18000", "36000", "36000"]
    )
    webhook_retry_jitter: float = Field(default=0.2, ge=0, le=0.5)
    # Deliveries in a row that failed for good after which a webhook is disabled (0: never).
    webhook_disable_after_failures: int = Field(default=5, ge=0, le=1000)
    # How long the previous signing secret stays valid (deliveries carry both signatures)
    # after a rotation, unless the rotation asks for another overlap.
    webhook_secret_overlap_seconds: int = Field(default=86_400, ge=0, le=7 * 86_400)
    # How often the delivery sweep looks for due or lost deliveries (the in-process sender's
    # poll on SQLite; on PostgreSQL deliveries are queue jobs and the sweep only recovers).
    webhook_sweep_seconds: float = Field(default=1.0, gt=0, le=300)
    # Bound on one model request, and how often a failed request is retried before the run
    # fails with model_error.
    model_request_timeout_seconds: float = Field(default=60, gt=0, le=600)
    model_max_retries: int = Field(default=2, ge=0, le=10)

    # Where runs execute: "inprocess" (inside `serve`), "queue" (procrastinate on PostgreSQL,
    # executed by `agentkeep worker`), or "auto" (queue on PostgreSQL, inprocess on SQLite).
    run_execution: Literal["auto", "inprocess", "queue"] = "auto"
    # Runs one process (serve's in-process runner, or one worker) executes at once. Runs wait
    # on models almost all the time and hold no connection meanwhile: size it for I/O.
    run_concurrency: int = Field(default=100, ge=1, le=2000)
    # Database connections an `agentkeep worker` keeps for its runs (besides its job queue's
    # and its notification listener's): fixed, whatever RUN_CONCURRENCY is.
    worker_db_pool_size: int = Field(default=12, ge=1, le=500)
    # A worker holds a run under a lease it renews; a run whose lease expired (its worker
    # died) is picked up again, up to run_max_attempts attempts, then failed (internal_error).
    run_lease_seconds: int = Field(default=30, ge=2, le=3600)
    run_max_attempts: int = Field(default=3, ge=1, le=20)
    # Default monthly token budget for organizations without their own; unset: unlimited.
    org_monthly_token_budget: int | None = Field(default=None, ge=0)

    # Single sign-on (docs/sso.md): OpenID providers as a JSON list; password login can be
    # turned off (the instance administrator keeps it); an existing account is linked to an
    # SSO identity by email only when this allows it and the provider says the email is verified.
    oidc_providers: list[OidcProviderConfig] = Field(default_factory=list)
    password_login_enabled: bool = True
    oidc_link_verified_email: bool = False
    # Private hosts and networks the OpenID providers may be at (an in-cluster Keycloak);
    # metadata addresses never. Discovery, token, JWKS and userinfo requests all pass the guard.
    oidc_allowed_networks: CommaList = Field(default_factory=list)
    # Leeway for the ID token's exp and iat against this server's clock.
    oidc_clock_leeway_seconds: int = Field(default=60, ge=0, le=300)
    oidc_timeout_seconds: float = Field(default=10, gt=0, le=60)

    # Unset: interactive docs on in development, off in production.
    docs_enabled: bool | None = None
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    # Requests one process works on at once; beyond it a request gets 503 with Retry-After at
    # once instead of queueing (docs/OPERATIONS.md "Overload"). Probes, /metrics and open event
    # streams take no slot.
    max_requests_in_flight: int = Field(default=64, ge=1, le=10_000)

    # Fernet keys for secrets at rest, newest first (comma-separated); every key decrypts.
    secrets_encryption_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)

    # Bearer token for GET /metrics; unset: metrics answer loopback clients only.
    metrics_token: SecretStr | None = None

    # Keys the audit trail: each record's MAC, the chain links and checkpoint signatures
    # (docs/audit.md). Base64 or hex, 32+ bytes. Optional in development, required in production.
    audit_hmac_key: SecretStr | None = None
    # Retired audit keys (comma-separated): records and checkpoints they signed still verify.
    audit_hmac_previous_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)

    # HMAC key for stored API key hashes; unset: derived from JWT_SECRET (rotating that
    # secret then invalidates every API key).
    api_key_hmac_key: SecretStr | None = None

    # OTLP/HTTP collector base URL (traces go to <url>/v1/traces); unset: no tracing. Needs
    # the `otel` extra: pip install 'agentkeep[otel]'.
    otel_exporter_otlp_endpoint: str | None = None
    otel_service_name: str = Field(default="agentkeep", pattern=r"^[A-Za-z0-9_\-.:/]{1,128}$")

    health_check_timeout: float = Field(default=2.0, gt=0, le=30)
    # Graceful shutdown of `agentkeep serve` (docs/OPERATIONS.md): after SIGTERM, readiness
    # answers 503 and new connections are still served for the drain period, so load balancers
    # take the instance out first; then in-flight requests get up to the timeout to finish.
    shutdown_drain_seconds: float = Field(default=0, ge=0, le=300)
    shutdown_timeout_seconds: int = Field(default=30, ge=1, le=3600)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "console"

    @field_validator(
        "cors_origins",
        "allowed_hosts",
        "trusted_proxies",
        "provider_allowed_networks",
        "mcp_allowed_networks",
        "webhook_allowed_networks",
        "oidc_allowed_networks",
        "webhook_retry_schedule",
        mode="before",
    )
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return _split_commas(value)

    @field_validator("allowed_hosts")
    @classmethod
    def _valid_hosts(cls, value: list[str]) -> list[str]:
        bad = [host for host in value if not _HOST_RE.match(host)]
        if bad:
            raise ValueError(f"{', '.join(map(repr, bad))}: not a host name or *.domain pattern")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _valid_proxies(cls, value: list[str]) -> list[str]:
        parse_networks(value)
        return value

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _valid_retry_schedule(cls, value: list[str]) -> list[str]:
        try:
            pauses = [float(item) for item in value]
        except ValueError:
            raise ValueError("must be seconds, comma-separated (e.g. 5,300,1800)") from None
        if len(pauses) > 30 or any(not 0 <= pause <= 7 * 86_400 for pause in pauses):
            raise ValueError("at most 30 pauses, each 0 to 604800 seconds")
        return value

    @property
    def webhook_retry_pauses(self) -> list[float]:
        return [float(item) for item in self.webhook_retry_schedule]

    @field_validator(
        "provider_allowed_networks",
        "mcp_allowed_networks",
        "webhook_allowed_networks",
        "oidc_allowed_networks",
    )
    @classmethod
    def _valid_egress_networks(cls, value: list[str]) -> list[str]:
        from agentkeep.tools.netguard import EgressAllowlist

        EgressAllowlist.parse(value)
        return value

    @field_validator("secrets_encryption_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        return _split_commas(value)

    @field_validator("secrets_encryption_keys")
    @classmethod
    def _valid_encryption_keys(cls, value: list[SecretStr]) -> list[SecretStr]:
        validate_keys([key.get_secret_value() for key in value])
        return value

    @field_validator("metrics_token")
    @classmethod
    def _strong_metrics_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if len(value.get_secret_value()) < 24:
            raise ValueError("must be at least 24 characters; generate one with `agentkeep gen-secret`")
        return value

    @field_validator("rate_limit_auth", "rate_limit_login_failures", "rate_limit_api", "rate_limit_runs")
    @classmethod
    def _valid_rate_limit(cls, value: str) -> str:
        parse_rate_limit(value)
        return value.strip()

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("jwt_secret")
    @classmethod
    def _strong_secret(cls, value: SecretStr) -> SecretStr:
        secret = value.get_secret_value()
        if not secret:
            raise ValueError("is required; generate one with `agentkeep gen-secret`")
        if secret.strip().lower() in PLACEHOLDER_SECRETS:
            raise ValueError("is a published placeholder value; generate one with `agentkeep gen-secret`")
        if len(secret) < MIN_SECRET_LENGTH:
            raise ValueError(
                f"must be at least {MIN_SECRET_LENGTH} characters (got {len(secret)}); "
                "generate one with `agentkeep gen-secret`"
            )
        if len(set(secret)) < 8:
            raise ValueError("has too few distinct characters to be a random secret")
        return value

    @field_validator("audit_hmac_key")
    @classmethod
    def _audit_key_material(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        if value.get_secret_value().strip().lower() in PLACEHOLDER_SECRETS:
            raise ValueError("is a published placeholder value; generate one with `agentkeep gen-secret`")
        decode_key_material(value.get_secret_value())
        return SecretStr(value.get_secret_value().strip())

    @field_validator("audit_hmac_previous_keys", mode="before")
    @classmethod
    def _split_previous_audit_keys(cls, value: Any) -> Any:
        return _split_commas(value)

    @field_validator("audit_hmac_previous_keys")
    @classmethod
    def _previous_audit_key_material(cls, value: list[SecretStr]) -> list[SecretStr]:
        for position, key in enumerate(value, start=1):
            try:
                decode_key_material(key.get_secret_value())
            except ValueError as exc:
                raise ValueError(f"key {position} {exc}") from None
        return value

    @field_validator("api_key_hmac_key")
    @classmethod
    def _strong_api_key_hmac_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        key = value.get_secret_value()
        if len(key) < MIN_SECRET_LENGTH:
            raise ValueError(
                f"must be at least {MIN_SECRET_LENGTH} characters (got {len(key)}); "
                "generate one with `agentkeep gen-secret`"
            )
        if key.strip().lower() in PLACEHOLDER_SECRETS or len(set(key)) < 8:
            raise ValueError("is not a random key; generate one with `agentkeep gen-secret`")
        return value

    @field_validator("otel_exporter_otlp_endpoint")
    @classmethod
    def _valid_otlp_endpoint(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL of an OTLP/HTTP collector")
        if parts.username or parts.password:
            raise ValueError("must not contain credentials; use OTEL_EXPORTER_OTLP_HEADERS")
        return value.strip()

    @field_validator("database_url")
    @classmethod
    def _valid_database_url(cls, value: str) -> str:
        return normalise_database_url(value)

    @field_validator("redis_url")
    @classmethod
    def _valid_redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        parts = urlsplit(value.get_secret_value().strip())
        if parts.scheme not in {"redis", "rediss", "unix"}:
            raise ValueError("must start with redis://, rediss:// or unix://")
        if parts.scheme != "unix" and not parts.hostname:
            raise ValueError("names no host")
        try:
            _ = parts.port
        except ValueError:
            raise ValueError("has an invalid port") from None
        return value

    @field_validator("cors_origins")
    @classmethod
    def _explicit_origins(cls, value: list[str]) -> list[str]:
        problems = []
        value = [origin.rstrip("/") for origin in value]
        for origin in value:
            if origin == "*":
                problems.append("'*' would let any web site call the API with its users' credentials")
            elif not _ORIGIN_RE.match(origin):
                problems.append(f"{origin!r} is not an origin of the form scheme://host[:port]")
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        problems = []
        if self.db_max_overflow > 10 * self.db_pool_size:
            problems.append("DB_MAX_OVERFLOW: more than ten times DB_POOL_SIZE; raise the pool size instead")
        if self.run_execution == "queue" and self.is_sqlite:
            problems.append(
                "RUN_EXECUTION: queue needs PostgreSQL; on SQLite runs execute inside serve (inprocess)"
            )
        if self.audit_hmac_previous_keys and self.audit_hmac_key is None:
            problems.append("AUDIT_HMAC_PREVIOUS_KEYS: set without AUDIT_HMAC_KEY; set the current key too")
        if self.otel_exporter_otlp_endpoint is not None and not tracing_available():
            problems.append(MISSING_EXTRA)
        problems.extend(
            provider_problems(self.oidc_providers, password_login_enabled=self.password_login_enabled)
        )
        if self.allow_registration and not self.password_login_enabled:
            problems.append(
                "ALLOW_REGISTRATION: true with PASSWORD_LOGIN_ENABLED=false; registered accounts "
                "could not sign in (users come from single sign-on)"
            )
        if self.environment == "production":
            problems.extend(relaxed_safeguards(self))
            problems.extend(production_problems(self.oidc_providers))
        if problems:
            raise ValueError(_MULTI_PROBLEM_SEPARATOR.join(problems))
        return self

    @property
    def registration_open(self) -> bool:
        """Self-registration: open in development, closed in production unless ALLOW_REGISTRATION."""
        if self.allow_registration is not None:
            return self.allow_registration
        # Without password login a registered account could never sign in.
        return self.environment == "development" and self.password_login_enabled

    @property
    def api_docs_enabled(self) -> bool:
        """Interactive API docs: on in development, off in production unless DOCS_ENABLED."""
        if self.docs_enabled is not None:
            return self.docs_enabled
        return self.environment == "development"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith(SQLITE_DRIVER)

    def redacted(self) -> dict[str, Any]:
        """The effective settings with every secret masked, for display."""
        shown: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "**********" if value.get_secret_value() else ""
            elif isinstance(value, list) and value and isinstance(value[0], SecretStr):
                value = ["**********"] * len(value)
            elif name == "oidc_providers":
                value = [provider.model_dump(mode="json") for provider in value]
            elif name == "database_url":
                value = make_url(value).render_as_string(hide_password=True)
            shown[name.upper()] = value
        return shown


def _field_env_name(loc: tuple[int | str, ...]) -> str:
    return str(loc[0]).upper() if loc else "configuration"


def describe_validation_error(error: ValidationError) -> list[str]:
    """Turn pydantic's errors into one readable line per problem, named by variable."""
    problems = []
    for item in error.errors(include_url=False, include_input=False):
        message = str(item["msg"]).removeprefix("Value error, ")
        if item["loc"]:
            problems.append(f"{_field_env_name(item['loc'])}: {message}")
        else:
            problems.extend(message.split(_MULTI_PROBLEM_SEPARATOR))
    return problems


def load_settings(**overrides: Any) -> Settings:
    """Read and validate the settings; raise ConfigError listing every problem at once."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None
