"""`agentkeep providers ...`: maintenance of stored provider credentials."""

from __future__ import annotations

import asyncio

import typer

from agentkeep.cli_settings import EXIT_CONFIG, settings_or_exit

providers_cli = typer.Typer(help="Maintain stored provider credentials.", no_args_is_help=True)

EXIT_UNREADABLE = 1
# sysexits.h EX_UNAVAILABLE, as `agentkeep audit` uses for a database it cannot reach.
EXIT_DATABASE = 69


@providers_cli.command("reencrypt")
def reencrypt() -> None:
    """Re-encrypt every stored provider key and MCP server's headers with the newest key.

    Run it after putting a new key first in the list; once it reports no unreadable key,
    the older keys can be removed. Exit 1 when some key could not be decrypted.
    """
    from sqlalchemy.exc import SQLAlchemyError

    # Every model, so the providers table's foreign keys resolve outside the app.
    import agentkeep.db.models  # noqa: F401
    from agentkeep.db.engine import create_engine, create_sessionmaker
    from agentkeep.providers.reencrypt import ReencryptReport, reencrypt_all
    from agentkeep.security.secretbox import secretbox_from_settings

    settings = settings_or_exit()
    box = secretbox_from_settings(settings)
    if box is None:
        typer.echo("SECRETS_ENCRYPTION_KEYS is unset: there is no key to re-encrypt with.", err=True)
        raise typer.Exit(EXIT_CONFIG)

    async def main() -> ReencryptReport:
        engine = create_engine(settings)
        try:
            return await reencrypt_all(create_sessionmaker(engine), box)
        finally:
            await engine.dispose()

    try:
        report = asyncio.run(main())
    except (SQLAlchemyError, OSError) as exc:
        # First line only: the rest of a SQLAlchemy message lists the statement's values.
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        typer.echo(f"database error: {first_line} (is the database migrated? `agentkeep migrate`)", err=True)
        raise typer.Exit(EXIT_DATABASE) from None
    typer.echo(f"re-encrypted {report.rewritten} provider key(s) with the newest key", err=True)
    for item in report.unreadable:
        typer.echo(
            f"unreadable: provider {item.name!r} ({item.provider_id}) of organization {item.org_id}: "
            "no configured key decrypts it; set a new API key for it",
            err=True,
        )
    typer.echo(f"re-encrypted the headers of {report.mcp.rewritten} MCP server(s)", err=True)
    for server in report.mcp.unreadable:
        typer.echo(
            f"unreadable: MCP server {server.name!r} ({server.server_id}) of organization {server.org_id}: "
            "no configured key decrypts its headers; set its headers again",
            err=True,
        )
    typer.echo(f"re-encrypted the signing secrets of {report.webhooks.rewritten} webhook(s)", err=True)
    for webhook_id in report.webhooks.unreadable:
        typer.echo(
            f"unreadable: webhook {webhook_id}: no configured key decrypts its signing secret; "
            "rotate its secret (POST .../rotate-secret)",
            err=True,
        )
    if report.unreadable or report.mcp.unreadable or report.webhooks.unreadable:
        raise typer.Exit(EXIT_UNREADABLE)
