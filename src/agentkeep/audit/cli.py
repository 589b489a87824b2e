"""`agentkeep audit ...`: seal, verify, checkpoint, export and prune the audit log.

`verify` only reads (records not sealed yet are reported; stale ones fail it); `seal`,
`checkpoint`, `export` and `prune` first seal every record committed so far.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, TypeVar

import typer

from agentkeep.cli_settings import settings_or_exit as _settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from agentkeep.audit.checkpoint import Checkpoint
    from agentkeep.config import Settings

# The database stack is imported inside each command: `agentkeep --help` stays fast.
GLOBAL_CHAIN = "global"
ExportFormat = Literal["jsonl", "csv"]

audit_cli = typer.Typer(
    help="Seal, verify, checkpoint, export and prune the audit log.", no_args_is_help=True
)

EXIT_BROKEN = 1
# sysexits.h EX_UNAVAILABLE
EXIT_DATABASE = 69
T = TypeVar("T")

ChainOption = Annotated[str, typer.Option("--chain", help="Chain to operate on", max=64)]


def _key(settings: Settings) -> bytes | None:
    return settings.audit_hmac_key.get_secret_value().encode() if settings.audit_hmac_key else None


def _when(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO 8601 date or time", param_hint=option) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


@asynccontextmanager
async def _session(settings: Settings) -> AsyncIterator[AsyncSession]:
    from agentkeep.db.engine import create_engine, create_sessionmaker

    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine)() as session:
            yield session
    finally:
        await engine.dispose()


def _run(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    from sqlalchemy.exc import SQLAlchemyError

    async def main() -> T:
        async with _session(settings) as session:
            return await work(session)

    try:
        return asyncio.run(main())
    except (SQLAlchemyError, OSError) as exc:
        # First line only: the rest of a SQLAlchemy message lists the statement's values.
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        typer.echo(f"database error: {first_line} (is the database migrated? `agentkeep migrate`)", err=True)
        raise typer.Exit(EXIT_DATABASE) from None


def _write_private(path: Path, text: str) -> None:
    # Written completely and flushed to disk before anything relies on it (prune deletes next).
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text + "\n")
        handle.flush()
        os.fsync(handle.fileno())


@audit_cli.command("seal")
def seal(chain: Annotated[str | None, typer.Option("--chain", help="Only this chain")] = None) -> None:
    """Seal every committed record not sealed yet (the API's background sealer does it too)."""
    from agentkeep.audit.sealing import seal_with

    sealed = _run(_settings(), lambda session: seal_with(session, None if chain is None else [chain]))
    typer.echo(f"sealed {sealed} records", err=True)


@audit_cli.command("verify")
def verify(
    checkpoint_file: Annotated[
        Path | None,
        typer.Option("--checkpoint", exists=True, dir_okay=False, help="Checkpoint to check against"),
    ] = None,
    chain: ChainOption = GLOBAL_CHAIN,
    max_unsealed_age: Annotated[
        float, typer.Option(min=0, help="Fail if a record has waited this many seconds to be sealed")
    ] = 60.0,
) -> None:
    """Check the whole chain and pending records (read-only); exit 1 naming every bad record."""
    from datetime import timedelta

    from agentkeep.audit.checkpoint import CheckpointError, load_checkpoint
    from agentkeep.audit.verify import verify_chain

    settings = _settings()
    checkpoint: Checkpoint | None = None
    if checkpoint_file is not None:
        try:
            retired = [key.get_secret_value().encode() for key in settings.audit_hmac_previous_keys]
            text = checkpoint_file.read_text(encoding="utf-8")
            checkpoint = load_checkpoint(text, _key(settings), retired)
        except CheckpointError as exc:
            typer.echo(f"checkpoint rejected: {exc}", err=True)
            raise typer.Exit(EXIT_BROKEN) from None
        chain = checkpoint.chain
    max_age = timedelta(seconds=max_unsealed_age)
    result = _run(
        settings, lambda session: verify_chain(session, chain, checkpoint, max_unsealed_age=max_age)
    )
    typer.echo(result.describe(), err=not result.ok)
    if not result.ok:
        raise typer.Exit(EXIT_BROKEN)


@audit_cli.command("checkpoint")
def checkpoint(
    output: Annotated[
        Path | None, typer.Option("--output", dir_okay=False, help="Also write it here")
    ] = None,
    chain: ChainOption = GLOBAL_CHAIN,
) -> None:
    """Seal, verify the chain and print its head signed with AUDIT_HMAC_KEY; keep it off this host."""
    from agentkeep.audit.retention import ChainBroken, signed_checkpoint

    settings = _settings()
    key = _key(settings)
    if key is None:
        typer.echo("warning: AUDIT_HMAC_KEY is not set; the checkpoint is unsigned", err=True)
    try:
        made = _run(settings, lambda session: signed_checkpoint(session, key, chain))
    except ChainBroken as exc:
        typer.echo(f"refusing to checkpoint: {exc}", err=True)
        raise typer.Exit(EXIT_BROKEN) from None
    if output is not None:
        _write_private(output, made.to_json())
    typer.echo(made.to_json())


@audit_cli.command("export")
def export(
    fmt: Annotated[ExportFormat, typer.Option("--format", help="jsonl or csv")] = "jsonl",
    since: Annotated[str | None, typer.Option(help="Inclusive start (ISO 8601, UTC if no offset)")] = None,
    until: Annotated[str | None, typer.Option(help="Exclusive end (ISO 8601, UTC if no offset)")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", dir_okay=False, help="File (default stdout)")
    ] = None,
    chain: ChainOption = GLOBAL_CHAIN,
) -> None:
    """Seal pending records, then stream the chain in sequence order as JSON lines or CSV."""
    from agentkeep.audit.export import write_export
    from agentkeep.audit.repository import stream_chain
    from agentkeep.audit.sealing import seal_with

    settings = _settings()
    start, end = _when(since, "--since"), _when(until, "--until")

    async def work(session: AsyncSession) -> int:
        await seal_with(session, [chain])
        records = stream_chain(session, chain=chain, since=start, until=end)
        if output is None:
            return await write_export(records, sys.stdout, fmt)
        with output.open("w", encoding="utf-8", newline="") as handle:
            return await write_export(records, handle, fmt)

    count = _run(settings, work)
    typer.echo(f"exported {count} records", err=True)


@audit_cli.command("prune")
def prune(
    before: Annotated[str, typer.Option(help="Delete records older than this (ISO 8601)")],
    checkpoint_output: Annotated[
        Path | None, typer.Option("--checkpoint-output", dir_okay=False, help="Where to write the checkpoint")
    ] = None,
    chain: ChainOption = GLOBAL_CHAIN,
) -> None:
    """Seal, write a signed checkpoint, then delete older records keeping the rest verifiable."""
    from agentkeep.audit.retention import ChainBroken, prune_before, signed_checkpoint

    settings = _settings()
    cutoff = _when(before, "--before")
    assert cutoff is not None
    key = _key(settings)

    async def work(session: AsyncSession) -> tuple[Checkpoint, int, int | None]:
        made = await signed_checkpoint(session, key, chain)
        await session.rollback()
        target = checkpoint_output or Path(f"audit-checkpoint-{chain}-{made.sequence}.json")
        _write_private(target, made.to_json())
        typer.echo(f"checkpoint written to {target}", err=True)
        async with session.begin():
            result = await prune_before(session, cutoff, chain, checkpoint=made)
        return made, result.deleted, result.through_sequence

    try:
        _made, deleted, through = _run(settings, work)
    except ChainBroken as exc:
        typer.echo(f"refusing to prune: {exc}", err=True)
        raise typer.Exit(EXIT_BROKEN) from None
    if through is None:
        typer.echo("nothing to prune", err=True)
    else:
        typer.echo(f"pruned {deleted} records through sequence {through}", err=True)
