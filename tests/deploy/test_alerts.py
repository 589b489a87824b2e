"""deploy/prometheus-alerts.yml: valid for Prometheus, each alert unit-tested with promtool,
and every metric it names exported by a real application under that name."""

from __future__ import annotations

import asyncio
import re
import secrets
import shlex
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from asgi_lifespan import LifespanManager
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import insert, update

from agentkeep.app import create_app
from agentkeep.audit.models import GLOBAL_CHAIN, AuditLog
from agentkeep.config import Settings
from agentkeep.db.base import utcnow
from agentkeep.db.engine import create_engine, create_sessionmaker
from agentkeep.runs.models import Run
from tests.support.databases import (
    create_postgres_database,
    drop_postgres_database,
    migrate,
    postgres_answers,
    unavailable,
)
from tests.support.peers import require_binary
from tests.support.processes import clean_environment, process_log
from tests.worker.helpers import make_run, wait_for

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus-alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus-alerts.test.yml"
# Sample names each family type exports (the rules name samples, not families).
SAMPLE_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
AUDIT_KEY = secrets.token_urlsafe(48)


def _rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = require_binary("promtool")
    return subprocess.run(
        [promtool, *args], cwd=ROOT / "deploy", capture_output=True, text=True, timeout=120, check=False
    )


def _runbook_promtool() -> dict[str, list[str]]:
    """The promtool commands docs/OPERATIONS.md tells operators to run (from deploy/), by verb."""
    doc = (ROOT / "docs" / "OPERATIONS.md").read_text()
    block = doc.split("### What to alert on", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [shlex.split(line) for line in block.splitlines() if line.strip()]
    assert all(command[0] == "promtool" for command in commands)
    return {command[1]: command[1:] for command in commands}


def test_promtool_accepts_the_rules_as_the_runbook_checks_them() -> None:
    args = _runbook_promtool()["check"]
    assert args == ["check", "rules", RULES.name]
    checked = _promtool(*args)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in checked.stdout


def test_every_alert_passes_its_promtool_unit_tests_as_the_runbook_runs_them() -> None:
    args = _runbook_promtool()["test"]
    assert args == ["test", "rules", RULE_TESTS.name]
    tested = _promtool(*args)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_has_a_case_where_it_fires_and_one_where_it_must_not() -> None:
    fires: set[str] = set()
    silent: set[str] = set()
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check["exp_alerts"] else silent).add(check["alertname"])
    alerts = {rule["alert"] for rule in _rules()}
    assert alerts - fires == set(), "no case where these fire"
    assert alerts - silent == set(), "no case where these stay silent"
    assert fires | silent <= alerts, "cases for alerts the rules do not have"


# --- the metrics, as a real application exports them -------------------------------------------


def _sample_names(exposition: str) -> set[str]:
    return {
        family.name + suffix
        for family in text_string_to_metric_families(exposition)
        for suffix in SAMPLE_SUFFIXES.get(family.type, ("",))
    }


def _sample(exposition: str, name: str) -> float | None:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", exposition, re.MULTILINE)
    return None if match is None else float(match.group(1))


@pytest.fixture
async def queue_database() -> AsyncIterator[str]:
    """A PostgreSQL database of the test's own, migrated as `agentkeep migrate` does (job queue
    included): its worker registry sees only this test's workers."""
    if not await postgres_answers():
        unavailable("PostgreSQL")
    url = await create_postgres_database("agentkeep_alerts")
    await migrate(url)
    yield url
    await drop_postgres_database(url)


@asynccontextmanager
async def _metrics_of(settings: Settings) -> AsyncIterator[Callable[[], Awaitable[str]]]:
    """A running application; yields a function scraping its /metrics."""
    async with LifespanManager(create_app(settings)) as manager:
        # /metrics answers loopback clients when no METRICS_TOKEN is set.
        transport = httpx.ASGITransport(app=manager.app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:

            async def get() -> str:
                response = await http.get("/metrics")
                assert response.status_code == 200, response.text
                return response.text

            yield get


Scraper = AbstractAsyncContextManager[Callable[[], Awaitable[str]]]
Scrape = Callable[..., Scraper]


@pytest.fixture
def scrape(make_settings: Callable[..., Settings]) -> Scrape:
    """Start an application with these settings; `async with scrape(...) as get`."""

    def build(**overrides: Any) -> Scraper:
        return _metrics_of(make_settings(**overrides))

    return build


@contextmanager
def _worker(database_url: str) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """A real `agentkeep worker` process on `database_url`, killed if the test leaves it running."""
    log_path = process_log(f"alerts-worker-{secrets.token_hex(3)}")
    env = clean_environment(
        {"JWT_SECRET": secrets.token_urlsafe(48), "DATABASE_URL": database_url, "LOG_FORMAT": "json"}
    )
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "agentkeep", "worker"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            yield process, log_path
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)


async def test_every_metric_the_rules_use_is_exported_under_that_name(
    queue_database: str, scrape: Scrape
) -> None:
    async with scrape(database_url=queue_database) as get:
        exported = _sample_names(await get())
    used = {
        (rule["alert"], metric)
        for rule in _rules()
        for metric in re.findall(r"\bagentkeep_[a-z_]+", rule["expr"])
    }
    assert used, "the rules name no AgentKeep metric"
    missing = sorted(f"{alert}: {metric}" for alert, metric in used if metric not in exported)
    assert missing == []


async def test_the_oldest_queued_run_s_age_and_live_workers_are_exported(
    queue_database: str, scrape: Scrape, make_settings: Callable[..., Settings]
) -> None:
    engine = create_engine(make_settings(database_url=queue_database))
    sessionmaker = create_sessionmaker(engine)
    try:
        run_id = await make_run(sessionmaker, "waiting")
        async with sessionmaker() as session, session.begin():
            await session.execute(
                update(Run).where(Run.id == run_id).values(created_at=utcnow() - timedelta(minutes=10))
            )
        async with scrape(database_url=queue_database) as get:
            before = await get()
            age = _sample(before, "agentkeep_run_queue_oldest_age_seconds")
            assert age is not None
            assert 600 <= age < 3600
            assert _sample(before, "agentkeep_workers_alive") == 0

            with _worker(queue_database) as (worker, log):

                async def alive(count: float) -> bool:
                    return _sample(await get(), "agentkeep_workers_alive") == count

                await wait_for(lambda: alive(1), within=90, interval=0.5)
                worker.send_signal(signal.SIGTERM)
                code = await asyncio.to_thread(worker.wait, 60)
                assert code == 0, await asyncio.to_thread(log.read_text)
                # A worker that stops cleanly leaves procrastinate's registry at once.
                assert await alive(0)
    finally:
        await engine.dispose()


async def test_without_a_job_queue_no_worker_gauge_is_exported(sqlite_url: str, scrape: Scrape) -> None:
    async with scrape(database_url=sqlite_url) as get:
        exposition = await get()
    # serve executes runs itself: a constant 0 would fire AgentKeepNoWorkers.
    assert "agentkeep_workers_alive" not in exposition
    assert _sample(exposition, "agentkeep_run_queue_oldest_age_seconds") == 0


def _pending_record(**values: Any) -> dict[str, Any]:
    return {
        "chain": GLOBAL_CHAIN,
        "timestamp": utcnow(),
        "actor_type": "system",
        "action": "agent_created",
        "status": "success",
        "details": {},
        **values,
    }


async def test_the_sealing_lag_is_exported(
    queue_database: str, scrape: Scrape, make_settings: Callable[..., Settings]
) -> None:
    # A record an instance with AUDIT_HMAC_KEY wrote, ten minutes ago, seen by an instance
    # without the key: its sealer may not seal keyed records, so the record waits.
    engine = create_engine(make_settings(database_url=queue_database))
    try:
        async with engine.begin() as connection:
            await connection.execute(
                insert(AuditLog).values(
                    _pending_record(timestamp=utcnow() - timedelta(minutes=10), key_id="k" * 16, mac="0" * 64)
                )
            )
    finally:
        await engine.dispose()
    async with scrape(database_url=queue_database) as get:
        lag = _sample(await get(), "agentkeep_audit_unsealed_oldest_age_seconds")
    assert lag is not None
    assert 600 <= lag < 3600


async def test_a_refused_forged_record_is_exported_until_it_is_dealt_with(
    queue_database: str, scrape: Scrape, make_settings: Callable[..., Settings]
) -> None:
    async with scrape(database_url=queue_database, audit_hmac_key=AUDIT_KEY) as get:
        assert _sample(await get(), "agentkeep_audit_refused_records") == 0
        # Written straight into the table, without the key: no insert MAC.
        engine = create_engine(make_settings(database_url=queue_database))
        try:
            async with engine.begin() as connection:
                await connection.execute(insert(AuditLog).values(_pending_record()))
        finally:
            await engine.dispose()

        async def refused() -> bool:
            return _sample(await get(), "agentkeep_audit_refused_records") == 1

        await wait_for(refused, within=30, interval=0.2)
        exposition = await get()
    assert _sample(exposition, 'agentkeep_audit_tamper_detected_total{reason="missing_mac"}') == 1
    assert _sample(exposition, "agentkeep_audit_unsealed_oldest_age_seconds") is not None


def test_the_operations_runbook_lists_every_alert_with_its_expression() -> None:
    doc = (ROOT / "docs" / "OPERATIONS.md").read_text()
    documented = set(re.findall(r"`(AgentKeep[A-Za-z]+)`", doc))
    assert documented == {rule["alert"] for rule in _rules()}
    for rule in _rules():
        expression = " ".join(rule["expr"].split())
        assert expression.replace("( ", "(").replace(" )", ")") in doc, rule["alert"]
