"""The suite-wide secret scan reads what the product wrote, and a planted secret fails a run."""

from __future__ import annotations

import re
import secrets
import uuid
from pathlib import Path

import httpx
import pytest

from tests.support.processes import run_agentkeep
from tests.support.scan_plugin import in_process_log_lines
from tests.support.secret_scan import current_scan

REPO = Path(__file__).resolve().parents[1]


async def test_the_scan_reads_the_log_lines_of_in_process_apps(client: httpx.AsyncClient) -> None:
    request_id = f"scan-{uuid.uuid4().hex}"
    assert (await client.get("/health/live", headers={"X-Request-ID": request_id})).status_code == 200
    mine = [line for line in in_process_log_lines() if request_id in line]
    assert mine, "the in-process app's access log line is not in the file the scan reads"
    assert '"event": "request"' in mine[0]  # the production format: one JSON object per line


def test_the_scan_reads_the_output_of_cli_processes(tmp_path: Path) -> None:
    scan = current_scan()
    assert scan is not None
    before = set(scan.run_dir.glob("agentkeep-migrate-*.log"))
    env = {
        "JWT_SECRET": secrets.token_urlsafe(40),
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'a.db'}",
    }
    assert run_agentkeep("migrate", cwd=tmp_path, env=env).returncode == 0
    (log,) = set(scan.run_dir.glob("agentkeep-migrate-*.log")) - before
    assert "database migrated to head" in log.read_text()


PLANTING_SUITE = """
import sys

import structlog

from tests.support.processes import run_logged


def test_a_worker_logs_a_refresh_token(tmp_path):
    structlog.get_logger("agentkeep.worker").info("worker_started")
    program = "import sys; sys.stderr.write('rotated akr_' + 'Zq9' * 12 + chr(10))"
    result = run_logged([sys.executable, "-c", program], name="planted-worker", cwd=tmp_path)
    assert result.returncode == 0
"""


def test_a_secret_planted_in_a_subprocess_log_fails_the_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    pytester.makepyfile(test_planted=PLANTING_SUITE)
    result = pytester.runpytest_subprocess("-p", "tests.support.scan_plugin", "-p", "no:cacheprovider")
    output = result.stdout.str()
    result.assert_outcomes(passed=1)  # the test itself passed: the scan failed the run
    assert result.ret == pytest.ExitCode.TESTS_FAILED, output
    assert re.search(r"log planted-worker-\w+\.log: token-shaped akr_Zq9Zq9", output), output
    counts = re.search(
        r"searched in (\d+) log lines of in-process apps, (\d+) lines of (\d+) process logs", output
    )
    assert counts is not None, output
    assert int(counts[1]) >= 1  # the inner test's own log line
    assert (int(counts[2]), int(counts[3])) == (1, 1)
