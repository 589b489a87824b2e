"""`agentkeep migrate` keeps procrastinate's own schema current, as procrastinate ships it.

The expected schema is procrastinate's `schema.sql` executed as is on a database of its own;
schemas are compared by their catalog (columns, constraints, indexes, functions, triggers,
enum values). The migration files are read from procrastinate's package directory.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path

import psycopg
import pytest

from agentkeep.db.migrate import upgrade
from agentkeep.worker.jobqueue import queue_conninfo
from tests.support.databases import (
    create_postgres_database,
    drop_postgres_database,
)
from tests.test_cli import run_cli

SHIPPED = sorted(
    entry.name
    for entry in resources.files("procrastinate.sql.migrations").iterdir()
    if entry.name.endswith(".sql")
)
CATALOG = {
    "columns": """SELECT table_name, column_name, data_type, udt_name, is_nullable, column_default
        FROM information_schema.columns WHERE table_schema = 'public' AND table_name LIKE 'procrastinate%'""",
    "constraints": """SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint
        WHERE conrelid::regclass::text LIKE 'procrastinate%'""",
    "indexes": """SELECT tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname = 'public' AND tablename LIKE 'procrastinate%'""",
    "functions": """SELECT proname, pg_get_function_identity_arguments(oid), pg_get_functiondef(oid)
        FROM pg_proc WHERE proname LIKE 'procrastinate%' AND prokind IN ('f', 'p')""",
    "triggers": """SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger
        WHERE NOT tgisinternal AND tgrelid::regclass::text LIKE 'procrastinate%'""",
    "enums": """SELECT t.typname, e.enumlabel, e.enumsortorder
        FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid WHERE t.typname LIKE 'procrastinate%'""",
}


def catalog(url: str) -> dict[str, list[tuple[object, ...]]]:
    with psycopg.connect(queue_conninfo(url)) as connection:
        return {
            name: sorted(connection.execute(query).fetchall(), key=repr) for name, query in CATALOG.items()
        }


def recorded(url: str) -> list[str]:
    with psycopg.connect(queue_conninfo(url)) as connection:
        return [
            row[0] for row in connection.execute("SELECT name FROM agentkeep_queue_migrations ORDER BY name")
        ]


def migrate_cli(url: str, cwd: Path) -> str:
    result = run_cli(
        "migrate", cwd=cwd, env={"DATABASE_URL": url, "JWT_SECRET": secrets.token_urlsafe(48)}, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stderr


@pytest.fixture
def database(fresh_database: str) -> str:
    return fresh_database


@pytest.fixture
async def expected(database: str) -> AsyncIterator[dict[str, list[tuple[object, ...]]]]:
    """The catalog of procrastinate's schema.sql, run by hand on a database of its own."""
    url = await create_postgres_database("agentkeep_queue_expected")
    try:
        schema = resources.files("procrastinate.sql").joinpath("schema.sql").read_text(encoding="utf-8")
        with psycopg.connect(queue_conninfo(url)) as connection:
            connection.execute(schema)
        yield await asyncio.to_thread(catalog, url)
    finally:
        await drop_postgres_database(url)


def test_migrate_creates_procrastinate_s_schema_and_a_second_run_changes_nothing(
    database: str, expected: dict[str, list[tuple[object, ...]]], tmp_path: Path
) -> None:
    output = migrate_cli(database, tmp_path)
    assert "job queue schema created" in output
    assert catalog(database) == expected
    assert recorded(database) == SHIPPED

    again = migrate_cli(database, tmp_path)
    assert "job queue" not in again
    assert catalog(database) == expected
    assert recorded(database) == SHIPPED


def test_pending_procrastinate_migrations_are_applied_in_order_to_an_older_schema(
    database: str, expected: dict[str, list[tuple[object, ...]]], tmp_path: Path
) -> None:
    migrate_cli(database, tmp_path)
    # As the queue schema was before two of procrastinate's changes: the priority-aware fetch
    # function of 3.3.0 and the status trigger that knows `retried` (3.4.0) missing, and not
    # recorded.
    older = [
        "03.03.00_01_pre_priority_lock_fetch_job.sql",
        "03.04.00_50_post_add_retry_failed_job_procedure.sql",
    ]
    with psycopg.connect(queue_conninfo(database)) as connection:
        connection.execute("DROP FUNCTION procrastinate_fetch_job_v2(character varying[], bigint)")
        connection.execute("DROP TRIGGER procrastinate_trigger_status_events_update_v1 ON procrastinate_jobs")
        connection.execute("DROP FUNCTION procrastinate_trigger_function_status_events_update_v1()")
        connection.execute("DELETE FROM agentkeep_queue_migrations WHERE name = ANY(%s)", (older,))
    assert catalog(database) != expected

    output = migrate_cli(database, tmp_path)
    assert [line.rsplit(": ", 1)[1] for line in output.splitlines() if "migration applied" in line] == older
    assert catalog(database) == expected
    assert recorded(database) == SHIPPED
    assert "job queue" not in migrate_cli(database, tmp_path)


async def test_a_queue_schema_created_before_migrations_were_recorded_is_taken_as_procrastinate_3_10(
    database: str, expected: dict[str, list[tuple[object, ...]]], tmp_path: Path
) -> None:
    # What `agentkeep migrate` did before: schema.sql of the pinned procrastinate 3.10.0, no record.
    await asyncio.to_thread(upgrade, database)
    schema = resources.files("procrastinate.sql").joinpath("schema.sql").read_text(encoding="utf-8")
    with psycopg.connect(queue_conninfo(database)) as connection:
        connection.execute(schema)

    output = await asyncio.to_thread(migrate_cli, database, tmp_path)
    assert "job queue" not in output
    assert await asyncio.to_thread(catalog, database) == expected
    # procrastinate 3.10.0's newest schema change is 3.4.0's.
    baseline = [name for name in SHIPPED if name < "03.05"]
    assert await asyncio.to_thread(recorded, database) == baseline
