"""`agentkeep serve` runs on asyncio's event loop, never uvloop, with one worker or several.

Why (docs/ARCHITECTURE.md, bench/README.md "Which event loop serve runs on"): libuv accepts
one connection per turn of its loop, so under overload a new connection, such as a
Kubernetes probe, waited seconds to be accepted; asyncio accepts all that are waiting.

Read from outside the process: uvloop is a compiled extension, so a process that runs on it
has its shared object mapped (/proc/<pid>/maps). The control checks that this reading does
see uvloop in a process that uses it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.server import running_server

UVLOOP_LIBRARY = "/uvloop/loop."


def _maps(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def test_the_reading_sees_uvloop_in_a_process_that_runs_on_it() -> None:
    code = (
        "import sys, time, uvloop; loop = uvloop.new_event_loop(); print('ready', flush=True); time.sleep(60)"
    )
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE) as process:
        try:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == b"ready"
            assert UVLOOP_LIBRARY in _maps(process.pid)
        finally:
            process.kill()


def test_serve_with_one_worker_runs_on_asyncio() -> None:
    with running_server() as server:
        assert server.process.poll() is None
        assert UVLOOP_LIBRARY not in _maps(server.process.pid)


@pytest.mark.slow
def test_serve_with_two_workers_runs_each_on_asyncio() -> None:
    with running_server(workers=2) as server:
        deadline = time.monotonic() + 30
        while len(workers := _children(server.process.pid)) < 2:
            assert time.monotonic() < deadline, f"serve has {len(workers)} worker processes"
            time.sleep(0.1)
        for pid in workers:
            assert UVLOOP_LIBRARY not in _maps(pid), f"worker {pid} loaded uvloop"
