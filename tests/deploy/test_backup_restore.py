"""The backup and restore runbook of docs/OPERATIONS.md, rehearsed as written.

PostgreSQL: a database populated through the API (agents and versions, a thread with turns,
runs with their events, audit records) is backed up with the runbook's block (an audit
checkpoint, then pg_dump) while its server runs, restored into a new database with the
restore block (createdb, pg_restore, migrate, `audit verify --checkpoint`), and a server on
the restored database must answer exactly what the original answered. An audit record edited
after the restore must make the runbook's verify fail: the control works.

SQLite: the same with `agentkeep backup`, taken while a server keeps creating agents; the
restored file must hold a prefix of those creations (one consistent moment) and everything
from before.
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.deploy.drill import (
    assert_contains,
    create_agent,
    populate,
    run_shell,
    runbook_block,
    runbook_line,
    running_worker,
    sealed_snapshot,
    snapshot,
)
from tests.support.databases import (
    ADMIN_URL,
    create_postgres_database,
    drop_postgres_database,
    postgres_answers,
    unavailable,
)
from tests.support.peers import require_binary
from tests.support.server import running_server

pytestmark = pytest.mark.timeout(600)

VERIFY = 'DATABASE_URL="$PGSERVER/$RESTORED" agentkeep audit verify'
SQLITE_VERIFY = "agentkeep audit verify"


def _keys() -> dict[str, str]:
    return {"JWT_SECRET": secrets.token_urlsafe(48), "AUDIT_HMAC_KEY": secrets.token_urlsafe(48)}


def _server(url: str) -> str:
    """A database URL as the runbook's PGSERVER: libpq's form, without the database name."""
    rendered = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    return rendered.rsplit("/", 1)[0]


def _stamp(workdir: Path) -> str:
    """The STAMP the backup block chose, read back from the files it wrote."""
    (checkpoint,) = workdir.glob("audit-checkpoint-*.json")
    return checkpoint.name.removeprefix("audit-checkpoint-").removesuffix(".json")


@pytest.fixture
def postgres_databases() -> Iterator[tuple[str, str]]:
    """(the database to back up, the name to restore into); both dropped afterwards."""
    if not asyncio.run(postgres_answers()):
        unavailable("PostgreSQL")
    url = asyncio.run(create_postgres_database("agentkeep_drill"))
    restored = (
        make_url(url).set(database=f"{make_url(url).database}_restored").render_as_string(hide_password=False)
    )
    yield url, restored
    asyncio.run(drop_postgres_database(restored))
    asyncio.run(drop_postgres_database(url))


def _tamper_postgres(url: str) -> None:
    """Edit one sealed audit record the way someone with database access but no key would."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    async def edit() -> None:
        engine = create_async_engine(url, poolclass=NullPool)
        try:
            async with engine.begin() as connection:
                edited = await connection.execute(
                    text(
                        "UPDATE audit_logs SET ip_address = '198.51.100.99' "
                        "WHERE sequence = (SELECT min(sequence) + 1 FROM audit_logs)"
                    )
                )
                assert edited.rowcount == 1
        finally:
            await engine.dispose()

    asyncio.run(edit())


def test_postgres_backup_and_restore_as_the_runbook_says(
    postgres_databases: tuple[str, str], tmp_path: Path
) -> None:
    for binary in ("pg_dump", "pg_restore", "createdb"):
        require_binary(binary)
    url, restored_url = postgres_databases
    keys = _keys()
    server_env = {**keys, "DATABASE_URL": url}
    # The runbook's variables, for the test's server: a libpq URL without a database.
    variables = {
        **keys,
        "PGSERVER": _server(ADMIN_URL),
        "DB": str(make_url(url).database),
        "RESTORED": str(make_url(restored_url).database),
    }

    with (
        running_server(server_env) as server,
        running_worker(server_env),
        httpx.Client(base_url=server.base_url, timeout=60) as http,
    ):
        auth = populate(http)
        before = sealed_snapshot(http, auth)
        # The server keeps running while the backup is taken, as the runbook allows.
        backup = run_shell(
            runbook_block("postgres-backup"), name="runbook-backup", cwd=tmp_path, env=variables
        )
        assert backup.returncode == 0, backup.stdout + backup.stderr
    assert len(before["runs"]) == 3
    assert all(events for events in before["events"].values())
    (messages,) = before["messages"].values()
    assert len(messages) >= 4  # two turns, each a request and an answer at least

    stamp = _stamp(tmp_path)
    assert (tmp_path / f"agentkeep-{stamp}.dump").stat().st_size > 0
    restore = run_shell(
        runbook_block("postgres-restore"),
        name="runbook-restore",
        cwd=tmp_path,
        env={**variables, "STAMP": stamp},
    )
    assert restore.returncode == 0, restore.stdout + restore.stderr
    assert "chain 'global' OK" in restore.stdout + restore.stderr

    with (
        running_server({**keys, "DATABASE_URL": restored_url}, migrate=False) as server,
        httpx.Client(base_url=server.base_url, timeout=60) as http,
    ):
        # The access token issued before the backup: its session is in the dump.
        after = snapshot(http, auth)
    # Every record in the checkpointed chain came back; reading leaves no new ones.
    assert after == before

    _tamper_postgres(restored_url)
    verify = run_shell(
        runbook_line("postgres-restore", VERIFY),
        name="runbook-verify",
        cwd=tmp_path,
        env={**variables, "STAMP": stamp},
    )
    assert verify.returncode == 1, verify.stdout + verify.stderr
    assert "BROKEN" in verify.stderr
    assert "edited" in verify.stderr


def _keep_creating(base_url: str, auth: dict[str, str], created: list[str], stop: threading.Event) -> None:
    with httpx.Client(base_url=base_url, timeout=60) as http:
        while not stop.is_set():
            created.append(create_agent(http, auth, f"load-{len(created):04d}")["id"])


def _tamper_sqlite(path: Path) -> None:
    with sqlite3.connect(path) as connection:
        edited = connection.execute(
            "UPDATE audit_logs SET ip_address = '198.51.100.99' "
            "WHERE sequence = (SELECT min(sequence) + 1 FROM audit_logs)"
        )
        assert edited.rowcount == 1
    connection.close()


def test_sqlite_online_backup_while_serving_then_restore_as_the_runbook_says(tmp_path: Path) -> None:
    workdir = tmp_path / "site"
    (workdir / "var").mkdir(parents=True)
    keys = _keys()
    # The default DATABASE_URL, relative to the working directory, as `make run` has it.
    env = {**keys, "DATABASE_URL": "sqlite+aiosqlite:///./var/agentkeep.db"}
    variables = {**env, "DB_FILE": "var/agentkeep.db"}
    created: list[str] = []
    stop = threading.Event()

    with running_server(env, workdir=workdir) as server:
        with httpx.Client(base_url=server.base_url, timeout=60) as http:
            auth = populate(http)
            before = sealed_snapshot(http, auth)
        writer = threading.Thread(target=_keep_creating, args=(server.base_url, auth, created, stop))
        writer.start()
        try:
            while len(created) < 3 and writer.is_alive():
                stop.wait(0.05)
            at_start = len(created)
            backup = run_shell(
                runbook_block("sqlite-backup"), name="runbook-sqlite-backup", cwd=workdir, env=variables
            )
        finally:
            stop.set()
            writer.join(timeout=60)
        assert backup.returncode == 0, backup.stdout + backup.stderr
        assert not writer.is_alive()
    assert at_start >= 3, "the server was not writing when the backup started"

    stamp = _stamp(workdir)
    backup_file = workdir / f"agentkeep-{stamp}.db"
    assert backup_file.stat().st_mode & 0o077 == 0
    restore = run_shell(
        runbook_block("sqlite-restore"),
        name="runbook-sqlite-restore",
        cwd=workdir,
        env={**variables, "STAMP": stamp},
    )
    assert restore.returncode == 0, restore.stdout + restore.stderr
    assert "chain 'global' OK" in restore.stdout + restore.stderr
    assert (workdir / f"replaced-{stamp}" / "agentkeep.db").exists()

    with (
        running_server(env, workdir=workdir, migrate=False) as server,
        httpx.Client(base_url=server.base_url, timeout=60) as http,
    ):
        after = snapshot(http, auth)
    assert_contains(after, before)
    # One consistent moment: the agents created while the backup ran are a prefix of the
    # creations, each whole (its version too), at least those made before it started.
    load = [agent_id for agent_id in created if agent_id in after["agents"]]
    assert load == created[: len(load)]
    assert len(load) >= at_start
    assert set(after["agents"]) == set(before["agents"]) | set(load)
    assert all(len(after["versions"][agent_id]) == 1 for agent_id in load)

    _tamper_sqlite(workdir / "var" / "agentkeep.db")
    verify = run_shell(
        runbook_line("sqlite-restore", SQLITE_VERIFY),
        name="runbook-sqlite-verify",
        cwd=workdir,
        env={**variables, "STAMP": stamp},
    )
    assert verify.returncode == 1, verify.stdout + verify.stderr
    assert "edited" in verify.stderr


def test_backup_refuses_postgresql_and_an_existing_file(tmp_path: Path) -> None:
    """The exit codes docs/OPERATIONS.md and the README give."""
    keys = _keys()
    refused = run_shell(
        "agentkeep backup --output copy.db",
        name="backup-postgres",
        cwd=tmp_path,
        env={**keys, "DATABASE_URL": "postgresql://agentkeep@db.invalid:5432/agentkeep"},
    )
    assert refused.returncode == 78
    assert "pg_dump" in refused.stderr
    assert not (tmp_path / "copy.db").exists()

    missing = run_shell(
        "agentkeep backup --output copy.db",
        name="backup-missing",
        cwd=tmp_path,
        env={**keys, "DATABASE_URL": "sqlite+aiosqlite:///./absent.db"},
    )
    assert missing.returncode == 69
    assert not (tmp_path / "absent.db").exists(), "a backup must not create the database it copies"

    env: dict[str, Any] = {**keys, "DATABASE_URL": "sqlite+aiosqlite:///./present.db"}
    assert run_shell("agentkeep migrate", name="migrate", cwd=tmp_path, env=env).returncode == 0
    (tmp_path / "copy.db").write_text("an older backup")
    exists = run_shell("agentkeep backup --output copy.db", name="backup-exists", cwd=tmp_path, env=env)
    assert exists.returncode == 73
    assert (tmp_path / "copy.db").read_text() == "an older backup"
