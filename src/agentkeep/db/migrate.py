"""Run Alembic migrations programmatically; the only way AgentKeep creates a schema."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

from agentkeep.db.engine import ensure_sqlite_directory

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
# procrastinate (the PostgreSQL job queue) manages its own tables, and
# agentkeep.worker.queue_schema records which of its migrations ran; Alembic leaves both alone.
QUEUE_TABLE_PREFIX = "procrastinate_"
QUEUE_MIGRATIONS_TABLE = "agentkeep_queue_migrations"


def include_object(
    _object: object, name: str | None, type_: str, _reflected: bool, _compare_to: object
) -> bool:
    """Alembic's filter: everything but the job queue's tables."""
    if type_ != "table" or name is None:
        return True
    return not (name.startswith(QUEUE_TABLE_PREFIX) or name == QUEUE_MIGRATIONS_TABLE)


def alembic_config(database_url: str | None = None, connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if database_url is not None:
        config.attributes["database_url"] = database_url
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Upgrade the database to `revision` (blocking; call from a thread in async code)."""
    ensure_sqlite_directory(database_url)
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(database_url), revision)


def current_heads() -> tuple[str, ...]:
    from alembic.script import ScriptDirectory

    return tuple(ScriptDirectory.from_config(alembic_config()).get_heads())
