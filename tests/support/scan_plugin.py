"""The pytest side of the secret scan (tests/support/secret_scan.py): set up, hand over, fail.

Each test process logs its in-process applications as production does (JSON at INFO) into the
scan's run directory, records every credential its HTTP clients carry, and scans at the end.
With pytest-xdist, each worker scans what it ran and hands its findings and counts to the
controller, whose exit status is the run's.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from typing import Any, TextIO

import pytest
import structlog

from agentkeep.observability.logging import configure_logging
from tests.support.credentials import record_http_credentials
from tests.support.secret_scan import SecretScan, current_scan, start_scan, summarise

# The production profile (docs/OPERATIONS.md): JSON lines at INFO.
LOG_LEVEL = "INFO"
LOG_FORMAT = "json"
_WORKER_OUTPUT_KEY = "agentkeep_secret_scan"
_patch = pytest.StashKey[pytest.MonkeyPatch]()
_stream = pytest.StashKey[TextIO]()
_handed_over = pytest.StashKey[list[dict[str, Any]]]()


def _scan() -> SecretScan:
    scan = current_scan()
    assert scan is not None, "the secret scan plugin is not configured"
    return scan


def configure_test_logging(stream: TextIO) -> None:
    """Configure logging of in-process apps as production does, into the scan's file."""
    configure_logging(LOG_LEVEL, LOG_FORMAT, stream)


def restore_test_logging(config: pytest.Config) -> None:
    """Put the suite's logging back after a test that configured its own."""
    structlog.reset_defaults()
    configure_test_logging(config.stash[_stream])


def _is_xdist_controller(config: pytest.Config) -> bool:
    return not hasattr(config, "workerinput") and getattr(config.option, "dist", "no") != "no"


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_handed_over] = []
    if _is_xdist_controller(config):
        return  # the workers run the tests, start the processes and scan
    scan = start_scan()
    stream = scan.in_process_log.open("a", buffering=1, encoding="utf-8")
    config.stash[_stream] = stream
    configure_test_logging(stream)
    patch = pytest.MonkeyPatch()
    config.stash[_patch] = patch
    record_http_credentials(patch, scan.remember)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _patch in config.stash:
        config.stash[_patch].undo()
    if _stream in config.stash:
        logging.getLogger().handlers[:] = []
        config.stash[_stream].close()


@pytest.fixture(autouse=True, scope="session")
def _scan_the_temporary_directory(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Log files and SQLite databases the tests leave in their temporary paths are read too."""
    _scan().roots.append(tmp_path_factory.getbasetemp())


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """Controller: take what a finished xdist worker found and read."""
    output = getattr(node, "workeroutput", {}).get(_WORKER_OUTPUT_KEY)
    if output is not None:
        node.config.stash[_handed_over].append(output)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    handed_over = config.stash[_handed_over]
    results = list(handed_over)
    if not _is_xdist_controller(config):
        scan = _scan()
        scan.finish()
        results.append(
            {
                "findings": scan.findings,
                "read": dict(scan.read),
                "remembered": scan.remembered,
                "seconds": scan.seconds,
            }
        )
    if hasattr(config, "workerinput"):
        # A worker's exit status does not reach the controller: its findings must.
        getattr(config, "workeroutput", {})[_WORKER_OUTPUT_KEY] = results[-1]
        return
    findings = [finding for result in results for finding in result["findings"]]
    read: Counter[str] = Counter()
    for result in results:
        read.update(result["read"])
    remembered = sum(int(result["remembered"]) for result in results)
    seconds = sum(float(result["seconds"]) for result in results)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(summarise(read, remembered, seconds))
        if findings:
            reporter.write_line("Secrets found in what the product logged or stored:", red=True)
            for finding in findings:
                reporter.write_line(f"  {finding}", red=True)
    if findings:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def in_process_log_lines() -> Iterator[str]:
    """The lines the in-process apps of this test process have logged so far."""
    with _scan().in_process_log.open(encoding="utf-8") as log:
        yield from log
