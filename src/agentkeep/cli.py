"""The `agentkeep` command line."""

from __future__ import annotations

import json
import os
import secrets
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from agentkeep.audit.cli import audit_cli
from agentkeep.cli_settings import EXIT_CONFIG
from agentkeep.cli_settings import settings_or_exit as _settings
from agentkeep.config import ConfigError
from agentkeep.providers.cli import providers_cli

cli = typer.Typer(
    name="agentkeep",
    help="AgentKeep: a secure, self-hostable control plane for AI agents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# The domain CLIs define their own typer apps; the root assembles them and they import nothing
# from here.
cli.add_typer(audit_cli, name="audit")
cli.add_typer(providers_cli, name="providers")


@cli.command("gen-secret")
def gen_secret(
    nbytes: Annotated[int, typer.Option("--bytes", min=32, max=256, help="Random bytes")] = 48,
    encryption_key: Annotated[
        bool, typer.Option("--encryption-key", help="Print a key for SECRETS_ENCRYPTION_KEYS instead")
    ] = False,
) -> None:
    """Print a strong random secret for JWT_SECRET (or any other key)."""
    if encryption_key:
        from agentkeep.security.secretbox import generate_key

        typer.echo(generate_key())
        return
    typer.echo(secrets.token_urlsafe(nbytes))


@cli.command("check-config")
def check_config() -> None:
    """Validate the configuration and print it with secrets redacted; non-zero when unsafe."""
    settings = _settings()
    typer.echo(json.dumps(settings.redacted(), indent=2, default=str))
    typer.echo("configuration OK", err=True)


@cli.command()
def migrate(
    revision: Annotated[str, typer.Argument(help="Target revision")] = "head",
) -> None:
    """Upgrade the database schema (to the newest revision by default)."""
    from agentkeep.db.migrate import upgrade

    settings = _settings()
    upgrade(settings.database_url, revision)
    if not settings.is_sqlite:
        from agentkeep.worker.queue_schema import apply_queue_schema

        changes = apply_queue_schema(settings.database_url)
        if changes.created:
            typer.echo("job queue schema created", err=True)
        for name in changes.applied:
            typer.echo(f"job queue migration applied: {name}", err=True)
    typer.echo(f"database migrated to {revision}", err=True)


@cli.command()
def backup(
    output: Annotated[Path, typer.Option("--output", dir_okay=False, help="File to write (must not exist)")],
) -> None:
    """Copy the SQLite database online, safe while `serve` runs (PostgreSQL: pg_dump, see docs)."""
    from agentkeep.db.backup import BackupError, backup_sqlite, sqlite_file

    settings = _settings()
    if not settings.is_sqlite:
        typer.echo(
            "agentkeep backup copies SQLite databases; back up PostgreSQL with pg_dump as "
            'docs/OPERATIONS.md, "Backup and restore of PostgreSQL", describes.',
            err=True,
        )
        raise typer.Exit(EXIT_CONFIG)
    try:
        result = backup_sqlite(sqlite_file(settings.database_url), output)
    except BackupError as error:
        typer.echo(f"backup failed: {error}", err=True)
        raise typer.Exit(error.exit_code) from None
    typer.echo(f"backup written to {result.output} ({result.size_bytes} bytes)", err=True)


ADMIN_PASSWORD_ENV = "AGENTKEEP_ADMIN_PASSWORD"  # noqa: S105 - a variable name


@cli.command("create-admin")
def create_admin(
    username: Annotated[str, typer.Option(help="Login name of the administrator")],
    email: Annotated[str, typer.Option(help="Email address of the administrator")],
) -> None:
    """Create a superuser. The password comes from a prompt or AGENTKEEP_ADMIN_PASSWORD."""
    import asyncio

    from agentkeep.auth.admin import create_admin as create
    from agentkeep.errors import AppError

    settings = _settings()
    password = os.environ.get(ADMIN_PASSWORD_ENV) or typer.prompt(
        "Password", hide_input=True, confirmation_prompt=True
    )
    try:
        user = asyncio.run(create(settings, username, email, password))
    except AppError as error:
        typer.echo(f"create-admin refused: {error.detail}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"created administrator {user.username} ({user.id})", err=True)


# asyncio's event loop, not uvloop (which uvicorn would pick when installed): asyncio accepts
# every connection waiting on the listening socket at each turn of the loop, libuv one per
# turn. Under overload a turn lasts tens of milliseconds, so with uvloop a new connection (a
# load balancer's health check, a Kubernetes probe) waited seconds for its accept and probes
# failed on a process that was only busy; uvloop's gain at normal load is a few percent
# (bench/README.md, "Which event loop serve runs on"). `agentkeep worker` keeps uvloop: it
# accepts no client connections.
SERVE_EVENT_LOOP = "asyncio"


@cli.command()
def serve(
    host: Annotated[str, typer.Option(envvar="HOST", help="Interface to bind")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(envvar="PORT", min=0, max=65535, help="Port (0 picks a free one)")
    ] = 8000,
    workers: Annotated[int, typer.Option(envvar="WEB_CONCURRENCY", min=1, max=64)] = 1,
) -> None:
    """Serve the HTTP API with uvicorn (SIGTERM drains and stops gracefully)."""
    import signal

    import uvicorn

    from agentkeep.app import create_app
    from agentkeep.observability.logging import configure_logging
    from agentkeep.observability.metrics import MULTIPROC_ENV
    from agentkeep.observability.multiproc import DeadWorkerReaper
    from agentkeep.serving import GracefulShutdown

    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)
    # uvicorn re-raises the SIGTERM it handled once it has shut down; a completed graceful
    # shutdown then exits 0, as does a SIGTERM that arrives before serving began.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    common: dict[str, object] = {
        "host": host,
        "port": port,
        "log_config": None,
        # Client addresses come from our own TRUSTED_PROXIES rule, never from uvicorn's.
        "proxy_headers": False,
        "server_header": False,
        "access_log": False,  # our own structured access log replaces uvicorn's
        # After SIGTERM and the drain period: stop accepting, give in-flight requests this
        # long, then run the lifespan shutdown. See agentkeep.serving.
        "timeout_graceful_shutdown": settings.shutdown_timeout_seconds,
        "loop": SERVE_EVENT_LOOP,
    }
    if workers > 1:
        # Each worker writes its metric samples here; any worker's /metrics aggregates them.
        metrics_dir = os.environ.setdefault(MULTIPROC_ENV, tempfile.mkdtemp(prefix="agentkeep-metrics-"))
        reaper = DeadWorkerReaper(Path(metrics_dir))  # exited workers' gauges stop counting
        reaper.start()
        try:
            # The supervisor restarts a worker that does not answer its health ping in time; a
            # worker importing the application on a busy host can take longer than uvicorn's
            # default 5 s, so it would be killed before it ever served.
            uvicorn.run(
                "agentkeep.serving:app_for_workers",
                factory=True,
                workers=workers,
                timeout_worker_healthcheck=60,
                **common,  # type: ignore[arg-type]
            )
        finally:
            reaper.stop()
    else:
        app = GracefulShutdown(create_app(settings, freeze_heap=True), settings.shutdown_drain_seconds)
        uvicorn.run(app, **common)  # type: ignore[arg-type]


@cli.command()
def worker(
    metrics_port: Annotated[
        int | None,
        typer.Option(envvar="WORKER_METRICS_PORT", min=1, max=65535, help="Serve this worker's metrics here"),
    ] = None,
    metrics_host: Annotated[str, typer.Option(help="Interface for the metrics port")] = "127.0.0.1",
) -> None:
    """Execute runs from the PostgreSQL job queue (SIGTERM finishes or hands back runs)."""
    import asyncio

    from agentkeep.observability.logging import configure_logging
    from agentkeep.worker.command import event_loop_factory, run_worker

    settings = _settings()
    if settings.is_sqlite:
        typer.echo(
            "agentkeep worker needs PostgreSQL: on SQLite, runs execute inside `agentkeep serve`.",
            err=True,
        )
        raise typer.Exit(EXIT_CONFIG)
    configure_logging(settings.log_level, settings.log_format)
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        runner.run(run_worker(settings, metrics_port=metrics_port, metrics_host=metrics_host))


def _exit_cleanly(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


def main() -> None:
    # Keep stray .env lookups relative to where the operator runs the command.
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    try:
        cli()
    except ConfigError as error:  # raised by a command that loaded settings late
        typer.echo(error.render(), err=True)
        sys.exit(EXIT_CONFIG)
