"""Read a server's own access log: what it answered and how long it took, per request id.

Bounds on how fast a server answers are asserted on the duration the server measured
itself (MetricsMiddleware logs it with each request), not on the client's wall clock, which
on a loaded host also counts the time the client waited to be scheduled.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

# What `serve` needs for one JSON access-log line per request.
ACCESS_LOG_ENV = {"LOG_LEVEL": "INFO", "LOG_FORMAT": "json"}


@dataclass(frozen=True, slots=True)
class Served:
    status: int
    seconds: float
    route: str


def served_requests(log: str) -> dict[str, Served]:
    """Every request the log records, by request id."""
    served: dict[str, Served] = {}
    for line in log.splitlines():
        if not line.startswith("{"):
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == "request" and "request_id" in entry:
            served[entry["request_id"]] = Served(
                status=int(entry["status"]),
                seconds=float(entry["duration_ms"]) / 1000,
                route=str(entry["route"]),
            )
    return served


def served_request(read_log: Callable[[], str], request_id: str, within: float = 10.0) -> Served:
    """The log entry of one request; the server writes it just after sending the answer."""
    deadline = time.monotonic() + within
    while True:
        served = served_requests(read_log()).get(request_id)
        if served is not None:
            return served
        if time.monotonic() > deadline:
            raise AssertionError(f"request {request_id} is not in the server's access log")
        time.sleep(0.05)
