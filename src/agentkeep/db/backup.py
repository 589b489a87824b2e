"""Online backup of a SQLite database with SQLite's own backup API (`agentkeep backup`).

The copy is taken inside one read transaction of the source, so it is the database as of one
commit, while `agentkeep serve` keeps writing: in WAL mode a reader never blocks writers
(nor they it). Copying the file with `cp` instead can catch a write half-done, or miss what
still sits in the `-wal` file beside it.

PostgreSQL is backed up with its own tools (docs/OPERATIONS.md); this module only names the
refusal.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

# sysexits.h codes, documented with the command in the README.
EXIT_UNAVAILABLE = 69  # the database file is missing or cannot be read
EXIT_CANTCREAT = 73  # the output exists or cannot be created
EXIT_IOERR = 74  # the copy failed or does not pass SQLite's integrity check
# A busy source (a long write by serve) is waited for this long before the copy gives up.
BUSY_TIMEOUT_SECONDS = 30.0


class BackupError(Exception):
    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class BackupResult:
    output: Path
    pages: int
    size_bytes: int


def sqlite_file(database_url: str) -> Path:
    """The file a `sqlite+aiosqlite:///...` URL names (relative to the working directory)."""
    database = make_url(database_url).database
    if not database or database == ":memory:":
        raise BackupError("DATABASE_URL names an in-memory SQLite database", EXIT_UNAVAILABLE)
    return Path(database)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy(source: Path, partial: Path) -> int:
    # The source is opened read-only: a backup must never change what it copies (and a
    # missing file must not be created empty).
    with (
        contextlib.closing(
            sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_SECONDS)
        ) as src,
        contextlib.closing(sqlite3.connect(partial)) as dst,
    ):
        # pages=-1: the whole database in one step, i.e. one read transaction of the source.
        # Copied in several steps, a write by another process between two steps restarts it.
        src.backup(dst, pages=-1)
        # A backup file stands alone: no -wal beside it when it is opened or copied back
        # (serve turns WAL on again when it opens the restored file).
        dst.execute("PRAGMA journal_mode=DELETE")
        found = [row[0] for row in dst.execute("PRAGMA integrity_check")]
        if found != ["ok"]:
            raise BackupError(f"the copy failed SQLite's integrity check: {'; '.join(found[:5])}", EXIT_IOERR)
        return int(dst.execute("PRAGMA page_count").fetchone()[0])


def backup_sqlite(source: Path, output: Path) -> BackupResult:
    """Copy `source` to `output` (which must not exist) online; the file appears only when
    complete, checked and flushed to disk, readable by its owner only."""
    if not source.is_file():
        raise BackupError(f"no SQLite database at {source}", EXIT_UNAVAILABLE)
    if output.exists():
        raise BackupError(f"{output} exists; a backup never overwrites a file", EXIT_CANTCREAT)
    directory = output.parent
    partial = directory / f".{output.name}.{secrets.token_hex(4)}.partial"
    try:
        # Created here with mode 0600: the copy holds every user, session hash and audit record.
        os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as exc:
        raise BackupError(f"cannot create {output}: {exc.strerror}", EXIT_CANTCREAT) from None
    try:
        try:
            pages = _copy(source, partial)
        except sqlite3.Error as exc:
            raise BackupError(f"the copy failed: {exc}", EXIT_IOERR) from None
        fd = os.open(partial, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if output.exists():  # appeared while we copied
            raise BackupError(f"{output} appeared during the backup; not overwritten", EXIT_CANTCREAT)
        os.replace(partial, output)
        _fsync_directory(directory)
    finally:
        partial.unlink(missing_ok=True)
    return BackupResult(output=output, pages=pages, size_bytes=output.stat().st_size)
