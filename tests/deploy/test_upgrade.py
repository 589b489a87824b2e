"""Upgrades rehearsed with the previous release's own code, taken from git history.

The previous release is milestone 1 (PREVIOUS_RELEASE, schema 0010_api_key_parent): the last
commit before threads, MCP servers, approvals and webhooks arrived (docs/OPERATIONS.md,
"Upgrading"). Its `src/` is extracted with `git archive` and run with this checkout's
dependencies (the releases since only added packages).

The previous release migrates a database and fills it through its own API; this release
migrates it to head, and its API shows everything the old one did; `migrate` a second time
changes nothing (the schema dump and the Alembic version stay the same). Then, as in a
rolling upgrade (docs/OPERATIONS.md, "Upgrading"), an instance of each release serves the
migrated database at once, with the new release's workers: the expand-then-contract rule
promises the old one keeps working (login, agents, runs), on both backends.

A clone without the history (a shallow one) cannot run these: they skip locally and fail in
CI, like a missing service.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import secrets
import shutil
import sqlite3
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from agentkeep.db.migrate import current_heads
from tests.deploy.drill import (
    ROOT,
    create_agent,
    login,
    populate,
    register,
    running_worker,
    sealed_snapshot,
    snapshot,
    wait_for_run,
)
from tests.support.databases import (
    create_postgres_database,
    drop_postgres_database,
    postgres_answers,
    unavailable,
)
from tests.support.peers import require_binary
from tests.support.processes import run_agentkeep, run_logged
from tests.support.server import running_server

pytestmark = pytest.mark.timeout(600)

# Milestone 1's last commit on main, before the threads merge (bf13ef1).
PREVIOUS_RELEASE = "78b0a616078025863efb7845b20d426ff0d3df87"
PREVIOUS_SCHEMA = "0010_api_key_parent"


@pytest.fixture(scope="module")
def previous_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The previous release's `src/`, extracted from git history."""
    if shutil.which("git") is None:
        unavailable("git")
    known = subprocess.run(
        ["git", "-C", str(ROOT), "cat-file", "-e", f"{PREVIOUS_RELEASE}^{{commit}}"],
        capture_output=True,
        check=False,
    )
    if known.returncode != 0:
        unavailable(f"the previous release's commit {PREVIOUS_RELEASE} (a shallow clone? fetch the history)")
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", PREVIOUS_RELEASE, "src"],
        capture_output=True,
        check=True,
    )
    target = tmp_path_factory.mktemp("previous-release")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(target, filter="data")
    return target / "src"


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'agentkeep.db'}"
        return
    if not asyncio.run(postgres_answers()):
        unavailable("PostgreSQL")
    url = asyncio.run(create_postgres_database("agentkeep_upgrade"))
    yield url
    asyncio.run(drop_postgres_database(url))


def _is_postgres(url: str) -> bool:
    return make_url(url).get_backend_name() == "postgresql"


@contextlib.contextmanager
def _workers(env: dict[str, str], python_path: Path | None = None) -> Iterator[None]:
    """On PostgreSQL runs need a worker; on SQLite `serve` runs them itself."""
    if _is_postgres(env["DATABASE_URL"]):
        with running_worker(env, python_path):
            yield
    else:
        yield


def _old(env: dict[str, str], previous_src: Path) -> dict[str, str]:
    return {**env, "PYTHONPATH": str(previous_src)}


def _version(url: str) -> str:
    async def read() -> str:
        from sqlalchemy import text
        from sqlalchemy.ext.asyncio import create_async_engine
        from sqlalchemy.pool import NullPool

        engine = create_async_engine(url, poolclass=NullPool)
        try:
            async with engine.connect() as connection:
                return str(
                    (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalar_one()
                )
        finally:
            await engine.dispose()

    return asyncio.run(read())


def _schema(url: str, workdir: Path) -> str:
    """The whole schema as the database itself describes it."""
    if _is_postgres(url):
        libpq = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        dump = run_logged(
            [require_binary("pg_dump"), "--schema-only", "--no-owner", libpq],
            name="pg_dump-schema",
            cwd=workdir,
        )
        assert dump.returncode == 0, dump.stderr
        # pg_dump guards each dump's psql meta-commands with a random key (`\restrict KEY`).
        return "\n".join(
            line for line in dump.stdout.splitlines() if not line.startswith(("\\restrict", "\\unrestrict"))
        )
    path = make_url(url).database
    assert path
    with contextlib.closing(sqlite3.connect(path)) as connection:
        rows = connection.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name")
        return "\n".join(repr(row) for row in rows)


def _migrate(env: dict[str, str], workdir: Path) -> None:
    result = run_agentkeep("migrate", env=env, cwd=workdir, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr


def assert_kept(later: Any, earlier: Any, where: str = "") -> None:
    """Everything the previous release showed is shown again, unchanged; the new release may
    add fields (thread_id on runs, approvers on agents, ...), never drop or alter one."""
    if isinstance(earlier, dict):
        assert isinstance(later, dict), where
        for key, value in earlier.items():
            assert key in later, f"{where}.{key} is missing"
            assert_kept(later[key], value, f"{where}.{key}")
    elif isinstance(earlier, list):
        assert isinstance(later, list), where
        assert len(later) == len(earlier), f"{where}: {len(later)} items, not {len(earlier)}"
        for index, (new, old) in enumerate(zip(later, earlier, strict=True)):
            assert_kept(new, old, f"{where}[{index}]")
    else:
        assert later == earlier, f"{where}: {later!r} != {earlier!r}"


def _openapi_paths(http: httpx.Client) -> set[str]:
    answer = http.get("/openapi.json")
    assert answer.status_code == 200
    return set(answer.json()["paths"])


def _exercise(http: httpx.Client, auth: dict[str, str], name: str) -> dict[str, Any]:
    """Agents list, create, read; a run on the new agent, to its end."""
    agent = create_agent(http, auth, name)
    listed = http.get("/api/agents", headers=auth)
    assert listed.status_code == 200, listed.text
    assert agent["id"] in {item["id"] for item in listed.json()["items"]}
    run = http.post(f"/api/agents/{agent['id']}/runs", headers=auth, json={"input": "What is 6 * 7?"})
    assert run.status_code == 202, run.text
    finished = wait_for_run(http, auth, run.json()["id"])
    assert finished["status"] == "completed", json.dumps(finished)
    return agent


def test_a_rolling_upgrade_from_the_previous_release(
    previous_src: Path, database: str, tmp_path: Path
) -> None:
    """The previous release fills a database; `migrate` (twice) takes it to head with the data
    intact; then instances of both releases serve it side by side, workers of the new one."""
    env = {"JWT_SECRET": secrets.token_urlsafe(48), "DATABASE_URL": database}
    old_env = _old(env, previous_src)

    # The previous release migrates (its migrations, up to its head) and fills the database.
    with (
        running_server(old_env, workdir=tmp_path) as server,
        _workers(old_env, previous_src),
        httpx.Client(base_url=server.base_url, timeout=60) as http,
    ):
        assert "/api/threads" not in _openapi_paths(http), "not the previous release's code"
        auth = populate(http, threads=False)
        before = sealed_snapshot(http, auth, threads=False)
    assert _version(database) == PREVIOUS_SCHEMA
    assert len(before["runs"]) == 1
    assert len(before["agents"]) == 2

    _migrate(env, tmp_path)
    assert (_version(database),) == current_heads()
    schema = _schema(database, tmp_path)
    _migrate(env, tmp_path)  # a second time: nothing to do
    assert (_version(database),) == current_heads()
    assert _schema(database, tmp_path) == schema

    # Workers first, then API instances: the previous release's instance keeps serving on the
    # new schema beside a new instance and the new release's workers.
    with (
        running_server(old_env, workdir=tmp_path, migrate=False) as old_server,
        running_server(env, workdir=tmp_path, migrate=False) as new_server,
        _workers(env),
        httpx.Client(base_url=old_server.base_url, timeout=60) as old,
        httpx.Client(base_url=new_server.base_url, timeout=60) as new,
    ):
        assert "/api/threads" not in _openapi_paths(old), "not the previous release's code"
        assert "/api/threads" in _openapi_paths(new)
        # The session the previous release issued is still valid on both, and everything it
        # showed is shown again by the new release.
        assert_kept(snapshot(new, auth, threads=False), before)
        # The old agent works with the new features: a thread turn on it completes.
        math = next(agent for agent in before["agents"].values() if agent["name"] == "math")
        thread = http_ok(
            new.post("/api/threads", headers=auth, json={"agent_id": math["id"], "title": "upgraded"})
        )
        turn = http_ok(
            new.post(f"/api/threads/{thread['id']}/runs", headers=auth, json={"input": "What is 2 + 2?"})
        )
        assert wait_for_run(new, auth, turn["id"])["status"] == "completed"

        # Each release creates, lists and runs agents, and reads what the other wrote.
        old_agent = _exercise(old, auth, "made-by-the-previous-release")
        new_agent = _exercise(new, auth, "made-by-the-new-release")
        assert_kept(http_ok(new.get(f"/api/agents/{old_agent['id']}", headers=auth)), old_agent)
        assert http_ok(old.get(f"/api/agents/{new_agent['id']}", headers=auth))["name"] == new_agent["name"]
        # A run the old instance queues is executed by the new release's workers, on an
        # agent either release wrote. (SQLite has no workers: `serve` runs what it queued
        # itself, so there the old instance runs only its own agent's runs.)
        targets = [math, new_agent] if _is_postgres(database) else [math]
        for agent in targets:
            run = http_ok(old.post(f"/api/agents/{agent['id']}/runs", headers=auth, json={"input": "1 + 1?"}))
            finished = wait_for_run(new, auth, run["id"])
            assert finished["status"] == "completed", json.dumps(finished)
        # A user the previous release registers logs in through the new one.
        register(old, "bob")
        login(new, "bob")


def http_ok(answer: httpx.Response) -> Any:
    assert answer.is_success, (
        f"{answer.request.method} {answer.request.url}: {answer.status_code} {answer.text}"
    )
    return answer.json()
