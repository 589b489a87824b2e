"""Overload: 1,000 concurrent connections on `GET /api/agents`, `serve --workers 2`, against
the same at 64 connections (issue 15).

    .venv/bin/python -m bench.overload [--seconds 10] [--runs 3] [--connections 1000]
        [--serve-workers 2] [--max-in-flight N]

A private PostgreSQL cluster (bench/scale.py), a fresh database, Redis with its own key
prefix (the per-user API limit on, its budget raised out of the way), 20 agents as in
bench/agents_list.py, MAX_REQUESTS_IN_FLIGHT at its default unless given. Per round:

1. wrk at 64 connections: the reference throughput;
2. wrk at `--connections` (timeout 10 s), counting answers by status (wrk_statuses.lua),
   while this process probes, one request at a time every 20 ms, `GET /health/live` and
   `GET /api/agents` on their own keep-alive connections, opened (and answered once) before
   wrk starts: the probe latencies, and for a refused probe its status, `Retry-After` and
   content type; and every 0.5 s `GET /health/live` on a new connection (as a Kubernetes
   probe or a new client comes), whose time counts the wait for serve to accept it;
3. hey at `--connections` for the same time, whose per-request record separates the
   latency of admitted (200) and refused (503) requests.

Reported per round and as medians: throughput of 200s at each load, admitted p50/p99,
refusal p50/p99, /health/live p50/p99/max during the overload (established connection,
and new connections), errors.
"""

from __future__ import annotations

import argparse
import csv
import http.client
import io
import json
import shutil
import statistics
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import httpx

from bench.agents_list import login_only, seed, seeded
from bench.profiling import py_spy, summarise
from bench.scale import bench_env, fresh_database, private_postgres
from bench.scale_api import spread
from bench.wrk import STATUSES_SCRIPT, run_wrk
from tests.support.server import running_server


class Prober(threading.Thread):
    """Sequential probes of one URL on one keep-alive connection until stopped.

    `ready` is set once the first probe is answered (the connection is open); samples are
    kept only once `measuring` is set."""

    def __init__(self, url: str, headers: dict[str, str] | None = None, gap: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.url, self.headers, self.gap = url, headers or {}, gap
        self.samples: list[tuple[int, float]] = []
        self.refusals: list[dict[str, str]] = []
        self.ready = threading.Event()
        self.measuring = threading.Event()
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(headers=self.headers, timeout=30) as client:
            while not self.stop.is_set():
                sent = time.perf_counter()
                try:
                    answer = client.get(self.url)
                except httpx.HTTPError:
                    if self.measuring.is_set():
                        self.samples.append((0, 1000 * (time.perf_counter() - sent)))
                    continue
                self.ready.set()
                if not self.measuring.is_set():
                    self.stop.wait(self.gap)
                    continue
                self.samples.append((answer.status_code, 1000 * (time.perf_counter() - sent)))
                if answer.status_code == 503 and len(self.refusals) < 3:
                    self.refusals.append(
                        {
                            "retry_after": answer.headers.get("Retry-After", ""),
                            "content_type": answer.headers.get("Content-Type", ""),
                        }
                    )
                self.stop.wait(self.gap)


class NewConnectionProbes(threading.Thread):
    """Every `gap` seconds until stopped, one `GET` on a connection of its own, each in its
    own thread so that a slow one does not delay the next: connect, request, answer."""

    def __init__(self, url: str, gap: float = 0.5, timeout: float = 60) -> None:
        super().__init__(daemon=True)
        parts = urllib.parse.urlsplit(url)
        self.host, self.port, self.path = parts.hostname or "127.0.0.1", parts.port, parts.path
        self.gap, self.timeout = gap, timeout
        self.samples: list[tuple[int, float]] = []
        self.stop = threading.Event()
        self._probes: list[threading.Thread] = []

    def probe(self) -> None:
        sent = time.perf_counter()
        connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            connection.request("GET", self.path)
            answer = connection.getresponse()
            answer.read()
            status = answer.status
        except (OSError, http.client.HTTPException):
            status = 0
        finally:
            connection.close()
        self.samples.append((status, 1000 * (time.perf_counter() - sent)))

    def run(self) -> None:
        while not self.stop.is_set():
            probe = threading.Thread(target=self.probe, daemon=True)
            probe.start()
            self._probes.append(probe)
            self.stop.wait(self.gap)

    def finish(self) -> None:
        """Stop sending; wait for the probes sent to be answered (or to time out)."""
        self.stop.set()
        self.join()
        for probe in self._probes:
            probe.join()


def run_hey(url: str, connections: int, seconds: int, headers: dict[str, str]) -> dict[str, Any]:
    """hey's per-request record: latency by status."""
    if shutil.which("hey") is None:
        raise SystemExit("hey is required for this benchmark: apt-get install hey")
    header_args = [arg for name, value in headers.items() for arg in ("-H", f"{name}: {value}")]
    out = subprocess.run(
        ["hey", "-c", str(connections), "-z", f"{seconds}s", "-t", "10", "-o", "csv", *header_args, url],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    by_status: dict[str, list[float]] = {}
    for row in csv.DictReader(io.StringIO(out)):
        by_status.setdefault(row["status-code"], []).append(1000 * float(row["response-time"]))
    return {
        "per_s": {status: round(len(values) / seconds, 1) for status, values in by_status.items()},
        "latency_ms": {status: spread(values) for status, values in by_status.items()},
    }


def one_round(
    url: str,
    health: str,
    headers: dict[str, str],
    args: argparse.Namespace,
    serve_pid: int,
    profile: Path | None,
) -> dict[str, Any]:
    reference = run_wrk(url, connections=64, seconds=args.seconds, headers=headers, script=STATUSES_SCRIPT)
    probes = [Prober(health), Prober(url, headers, gap=0.05)]
    for probe in probes:
        probe.start()
    for probe in probes:  # their connections open before wrk's: accepted, not queued behind
        if not probe.ready.wait(60):
            raise SystemExit(f"no answer to {probe.url} within 60 s before the overload")
        probe.measuring.set()
    new_connections = NewConnectionProbes(health)
    new_connections.start()
    with py_spy(serve_pid, profile):
        overload = run_wrk(
            url,
            connections=args.connections,
            seconds=args.seconds,
            headers=headers,
            script=STATUSES_SCRIPT,
            timeout="10s",
        )
    new_connections.finish()
    for probe in probes:
        probe.stop.set()
        probe.join()
    hey = run_hey(url, args.connections, args.seconds, headers)
    health_ms = [ms for status, ms in probes[0].samples if status == 200]
    agents = probes[1].samples
    return {
        "c64": {"rps": reference["rps"], "p99_ms": reference["p99_ms"], "non_2xx": reference["non_2xx"]},
        "overload_wrk": {
            "ok_per_s": round(int(overload.get("status_200", 0)) / args.seconds, 1),
            "refused_per_s": round(int(overload.get("status_503", 0)) / args.seconds, 1),
            "p50_ms_all": overload["p50_ms"],
            "p99_ms_all": overload["p99_ms"],
            "over_1s": overload.get("over_1s", 0),
            "socket_errors": overload["socket_errors"],
            "other_statuses": {
                key: value for key, value in overload.items()
                if key.startswith("status_") and key not in ("status_200", "status_503")
            },
        },
        "health_live_ms": {
            **spread(health_ms), "failed": sum(status != 200 for status, _ in probes[0].samples)
        },
        "health_live_new_connection_ms": {
            **spread([ms for status, ms in new_connections.samples if status == 200]),
            "probes": len(new_connections.samples),
            "failed": sum(status != 200 for status, _ in new_connections.samples),
        },
        "probe_agents": {
            "ok_ms": spread([ms for status, ms in agents if status == 200]),
            "refused_ms": spread([ms for status, ms in agents if status == 503]),
            "refusals": probes[1].refusals,
        },
        "overload_hey": hey,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--serve-workers", type=int, default=2)
    parser.add_argument(
        "--max-in-flight", type=int, default=0, help="MAX_REQUESTS_IN_FLIGHT (default: the product's)"
    )
    parser.add_argument("--profile", type=Path, help="py-spy serve's workers during the first wrk overload")
    args = parser.parse_args()
    with (
        private_postgres() as admin_url,
        fresh_database(admin_url, "agentkeep_bench_overload") as database_url,
    ):
        env = bench_env(database_url, RUN_EXECUTION="inprocess")
        if args.max_in_flight:
            env["MAX_REQUESTS_IN_FLIGHT"] = str(args.max_in_flight)
        with running_server(env, workers=args.serve_workers) as server:
            token, _org = login_only(server.base_url) if seeded(server.base_url) else seed(server.base_url)
            headers = {"Authorization": f"Bearer {token}"}
            url = f"{server.base_url}/api/agents?limit=20"
            run_wrk(url, connections=64, seconds=2, headers=headers)  # warm-up
            rounds = []
            for index in range(args.runs):
                profile = args.profile if index == 0 else None
                rounds.append(
                    one_round(
                        url, f"{server.base_url}/health/live", headers, args, server.process.pid, profile
                    )
                )
                print(json.dumps(rounds[-1]), flush=True)
    print(json.dumps(medians(rounds)), flush=True)
    if args.profile:
        print(summarise(args.profile))


def medians(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    def median(path: tuple[str, ...]) -> float:
        values = []
        for item in rounds:
            value: Any = item
            for key in path:
                value = value.get(key, {}) if isinstance(value, dict) else {}
            if isinstance(value, int | float):
                values.append(float(value))
        return round(statistics.median(values), 1) if values else float("nan")

    return {
        "medians_of": len(rounds),
        "c64_rps": median(("c64", "rps")),
        "overload_ok_per_s": median(("overload_wrk", "ok_per_s")),
        "overload_refused_per_s": median(("overload_wrk", "refused_per_s")),
        "admitted_p50_ms": median(("overload_hey", "latency_ms", "200", "p50")),
        "admitted_p99_ms": median(("overload_hey", "latency_ms", "200", "p99")),
        "refused_p50_ms": median(("overload_hey", "latency_ms", "503", "p50")),
        "refused_p99_ms": median(("overload_hey", "latency_ms", "503", "p99")),
        "health_live_p50_ms": median(("health_live_ms", "p50")),
        "health_live_p99_ms": median(("health_live_ms", "p99")),
        "health_live_new_connection_p50_ms": median(("health_live_new_connection_ms", "p50")),
        "health_live_new_connection_max_ms": median(("health_live_new_connection_ms", "max")),
        "over_1s_wrk": median(("overload_wrk", "over_1s")),
    }


if __name__ == "__main__":
    main()
