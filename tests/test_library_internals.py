"""Names AgentKeep uses that its libraries do not publish: each test fails when one changes.

- `limits`: MemoryStorage's name-mangled sweep hook, overridden by
  agentkeep.ratelimit.storage.ThrottledMemoryStorage.
- `enum`: `_value2member_map_`, read by agentkeep.errors (HTTPStatus) and
  agentkeep.apikeys.service (Permission) to test membership without raising.
- `prometheus_client`: the file name of a live-mode gauge in PROMETHEUS_MULTIPROC_DIR,
  matched by agentkeep.observability.multiproc to find the processes it marks dead.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import subprocess
import sys
from http import HTTPStatus
from pathlib import Path

from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from agentkeep.observability.multiproc import LIVE_GAUGE_FILE, mark_dead_processes
from agentkeep.ratelimit.storage import _UPSTREAM_SWEEP, ThrottledMemoryStorage
from agentkeep.rbac.permissions import Permission


def test_limits_memory_storage_still_has_the_sweep_hook_we_override() -> None:
    hook = getattr(MemoryStorage, _UPSTREAM_SWEEP, None)
    assert hook is not None, f"limits renamed {_UPSTREAM_SWEEP}"
    assert inspect.iscoroutinefunction(hook)
    assert list(inspect.signature(hook).parameters) == ["self"]
    assert _UPSTREAM_SWEEP in ThrottledMemoryStorage.__dict__  # the override has the same name


async def test_limits_calls_the_sweep_hook_on_every_write_the_limiter_makes() -> None:
    calls: list[str] = []

    class Recording(MemoryStorage):
        async def _MemoryStorage__schedule_expiry(self) -> None:  # noqa: N802 - upstream's name
            calls.append("sweep")

    storage = Recording()
    await storage.incr("counter", 60)
    assert calls == ["sweep"]
    await MovingWindowRateLimiter(storage).hit(RateLimitItemPerMinute(5), "client")
    assert calls == ["sweep", "sweep"]


async def test_the_throttled_sweep_still_reaches_upstream_and_expires_entries() -> None:
    storage = ThrottledMemoryStorage()
    await storage.incr("short-lived", 0.05)
    await asyncio.sleep(0.1)
    storage._next_sweep = 0.0  # the next write sweeps
    await storage.incr("other", 60)
    for _ in range(50):  # upstream sweeps in a task of its own
        if "short-lived" not in storage.storage:
            break
        await asyncio.sleep(0.02)
    assert "short-lived" not in storage.storage
    assert storage.storage["other"] == 1


def test_enum_value_to_member_map_still_maps_values_to_members() -> None:
    assert HTTPStatus._value2member_map_[404] is HTTPStatus.NOT_FOUND
    assert 599 not in HTTPStatus._value2member_map_
    for permission in Permission:
        assert Permission._value2member_map_[permission.value] is permission
    assert "not:a-permission" not in Permission._value2member_map_


def test_prometheus_live_gauge_files_are_named_as_the_reaper_expects(tmp_path: Path) -> None:
    # prometheus_client picks its multiprocess value class at import: a fresh interpreter.
    script = (
        "import os\n"
        "from prometheus_client import CollectorRegistry, Gauge\n"
        "Gauge('pool', 'pool', registry=CollectorRegistry(), multiprocess_mode='livesum').set(3)\n"
        "print(os.getpid())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    pid = int(result.stdout.strip())
    [written] = [path.name for path in tmp_path.iterdir()]
    match = LIVE_GAUGE_FILE.match(written)
    assert match is not None, written
    assert int(match.group(1)) == pid

    assert mark_dead_processes(tmp_path) == [pid]  # that process has exited
    assert list(tmp_path.iterdir()) == []
