"""procrastinate's own schema on PostgreSQL: created, then kept up to date by `agentkeep migrate`.

procrastinate ships its full schema (`schema.sql`, the current version) and one SQL file per
schema change since (`SchemaManager.get_migrations_path()`), but records nothing in the
database. `agentkeep_queue_migrations` records which of those files the database has:

- a database without the queue tables gets `schema.sql`, and every shipped migration is
  recorded as applied (the schema already contains them);
- a database with the queue tables but no record (created before this table existed) is
  taken to be at `BASELINE_MIGRATION`, the newest change in procrastinate 3.10.0, the only
  version AgentKeep pinned until then;
- then every shipped migration not recorded yet is applied in version order, each in its
  own transaction with its record, so an interrupted run resumes where it stopped.

Both `pre` and `post` migrations of a procrastinate upgrade are applied by the same
`agentkeep migrate`, so upgrade procrastinate with the workers stopped (docs/OPERATIONS.md).
A session-level advisory lock serialises concurrent `agentkeep migrate` runs.
procrastinate's schema is its own, outside Alembic: migrations/env.py ignores it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from procrastinate.schema import SchemaManager
from psycopg import sql

from agentkeep.db.migrate import QUEUE_MIGRATIONS_TABLE as MIGRATIONS_TABLE
from agentkeep.worker.jobqueue import queue_conninfo

# Serialises concurrent `agentkeep migrate` runs while the queue schema changes.
SCHEMA_LOCK_KEY = 0x61676B71  # "agkq"
BASELINE_MIGRATION = "03.04.00_50_post_add_retry_failed_job_procedure.sql"

_CREATE_TABLE = sql.SQL(
    "CREATE TABLE IF NOT EXISTS {} (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
).format(sql.Identifier(MIGRATIONS_TABLE))
_RECORD = sql.SQL("INSERT INTO {} (name) VALUES (%s) ON CONFLICT DO NOTHING").format(
    sql.Identifier(MIGRATIONS_TABLE)
)
_APPLIED = sql.SQL("SELECT name FROM {}").format(sql.Identifier(MIGRATIONS_TABLE))


@dataclass
class QueueSchemaChanges:
    created: bool = False
    applied: list[str] = field(default_factory=list)


def shipped_migrations() -> list[Path]:
    """procrastinate's migration files, oldest first (their names start with the version)."""
    return sorted(Path(SchemaManager.get_migrations_path()).glob("*.sql"), key=lambda path: path.name)


def queue_schema_present(connection: psycopg.Connection[Any]) -> bool:
    row = connection.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL").fetchone()
    return bool(row and row[0])


def _record(connection: psycopg.Connection[Any], names: list[str]) -> None:
    for name in names:
        connection.execute(_RECORD, (name,))


def apply_queue_schema(database_url: str) -> QueueSchemaChanges:
    """Create the queue schema if missing, then apply procrastinate's pending migrations."""
    changes = QueueSchemaChanges()
    migrations = shipped_migrations()
    with psycopg.connect(queue_conninfo(database_url), autocommit=True) as connection:
        connection.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK_KEY,))
        try:
            with connection.transaction():
                connection.execute(_CREATE_TABLE)
                applied = {row[0] for row in connection.execute(_APPLIED)}
                if not queue_schema_present(connection):
                    connection.execute(SchemaManager.get_schema())
                    _record(connection, [path.name for path in migrations])
                    changes.created = True
                    return changes
                if not applied:
                    baseline = [path.name for path in migrations if path.name <= BASELINE_MIGRATION]
                    _record(connection, baseline)
                    applied.update(baseline)
            for path in migrations:
                if path.name in applied:
                    continue
                # An ALTER TYPE ... ADD VALUE must commit before a later file uses the value.
                with connection.transaction():
                    connection.execute(path.read_text(encoding="utf-8"))
                    _record(connection, [path.name])
                changes.applied.append(path.name)
        finally:
            connection.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK_KEY,))
    return changes
