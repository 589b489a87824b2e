"""Metrics of `serve --workers N` processes that exited stop being reported.

prometheus_client keeps one file per process and metric type in PROMETHEUS_MULTIPROC_DIR.
The files of gauges in a `live*` mode (the database pool gauge) must go when their process
exits, or every scrape keeps adding the last values of each worker that ever ran: one that
crashed, one the supervisor replaced after a failed health check, every worker before a
SIGHUP restart. `prometheus_client.multiprocess.mark_process_dead(pid)` removes them, but
uvicorn's supervisor has no hook for a worker's exit, so the supervisor process runs
`DeadWorkerReaper`: every second it finds the processes that own live-gauge files and marks
those that no longer exist. Counters and histograms of dead workers are kept, as they must
be: their counts stay part of the totals.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

from prometheus_client.multiprocess import mark_process_dead

# prometheus_client's file name for a live-mode gauge of one process (tests/test_library_internals.py).
LIVE_GAUGE_FILE = re.compile(r"^gauge_live[a-z]+_(\d+)\.db$")
REAP_INTERVAL_SECONDS = 1.0


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def mark_dead_processes(directory: Path) -> list[int]:
    """Mark every process with live-gauge files in `directory` that has exited; their pids."""
    pids = {int(match.group(1)) for name in os.listdir(directory) if (match := LIVE_GAUGE_FILE.match(name))}
    dead = sorted(pid for pid in pids if not process_exists(pid))
    for pid in dead:
        mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]
    return dead


class DeadWorkerReaper:
    """A daemon thread of the supervisor process marking exited workers dead."""

    def __init__(self, directory: Path, interval: float = REAP_INTERVAL_SECONDS) -> None:
        self.directory = directory
        self.interval = interval
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="metrics-reaper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()
        mark_dead_processes(self.directory)  # the workers that stopped with the server

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            try:
                mark_dead_processes(self.directory)
            except OSError:  # a file removed under us; the next pass sees the directory again
                continue
