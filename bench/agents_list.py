"""Authenticated, tenant-scoped `GET /api/agents` (20 agents) on PostgreSQL against a bare
FastAPI + asyncpg endpoint returning the same rows, at 64 concurrent connections, with 1 and
2 uvicorn workers, side by side in one run (alternating rounds).

    .venv/bin/python -m bench.agents_list [--seconds 8] [--runs 3] [--connections 64] [--workers 1 2]
        [--redis redis://127.0.0.1:6379/0] [--baseline-python OTHER_CHECKOUT/.venv/bin/python]

AgentKeep runs with everything on: JWT verification, the session, user and membership check
(one query, or none for a caller its process saw in the last second), the per-user rate
limit in Redis (its budget raised so the load is not refused), security headers, metrics and
the access log. Load comes from wrk (apt-get install wrk). Reports requests/s, p50/p99,
non-2xx, socket errors and pool timeouts (read from the server logs); medians of `--runs`
rounds. Also the CPU time per request of the server's processes and of the PostgreSQL
backends serving the benchmark database (from /proc, so both must run on this machine),
which vary far less than throughput when other work shares the machine. With
`--baseline-python`, the `agentkeep serve` of another checkout joins the same alternating
rounds on the same database: a before/after comparison under the same load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url

from bench.proc_cpu import cpu_seconds, postgres_backends, process_tree, spent
from bench.wrk import run_wrk, summarise
from tests.support.databases import create_postgres_database, drop_postgres_database
from tests.support.processes import clean_environment
from tests.support.server import running_server
from tests.support.throwaway import free_port

PASSWORD = "bench-password-" + secrets.token_hex(8)
OURS = "agentkeep GET /api/agents"
BASELINE = "baseline GET /api/agents"
BARE = "bare FastAPI + asyncpg"


def seed(base_url: str) -> tuple[str, str]:
    """Register a user, create 20 agents; return (access token, org id)."""
    with httpx.Client(base_url=base_url, timeout=30) as client:
        user = {"username": "bench", "email": "bench@example.com", "password": PASSWORD}
        client.post("/auth/register", json=user).raise_for_status()
        login = client.post("/auth/login", data={"username": "bench", "password": PASSWORD})
        login.raise_for_status()
        token = login.json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        org_id = ""
        for index in range(20):
            created = client.post(
                "/api/agents",
                headers=headers,
                json={
                    "name": f"agent-{index:02d}",
                    "description": "benchmark agent",
                    "model": "test",
                    "system_prompt": "You are a careful assistant. " * 10,
                    "tools": [{"name": "calculator"}, {"name": "current_time"}],
                },
            )
            created.raise_for_status()
            org_id = created.json()["org_id"]
        listed = client.get("/api/agents?limit=20", headers=headers)
        listed.raise_for_status()
        assert len(listed.json()["items"]) == 20
        return token, org_id


@contextlib.contextmanager
def bare_server(database_url: str, org_id: str, workers: int, pool: int) -> Iterator[tuple[str, int]]:
    port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="agentkeep-bare-"))
    env = {**os.environ, "DATABASE_URL": database_url, "ORG_ID": org_id, "POOL": str(pool)}
    with (folder / "bare.log").open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "uvicorn", "bench.bare_agents:create_app", "--factory",
                "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
                "--log-level", "warning", "--no-access-log",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parent.parent,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{base}/agents", timeout=1).status_code == 200:
                        break
                time.sleep(0.2)
            else:
                raise RuntimeError((folder / "bare.log").read_text())
            yield base, process.pid
        finally:
            process.terminate()
            process.wait(timeout=15)


def with_cpu(
    url: str, server_pid: int, database: str, seconds: int, connections: int, headers: dict[str, str]
) -> dict[str, float | int]:
    """One wrk round, with the CPU the server and PostgreSQL spent per request meanwhile."""
    server, backends = process_tree(server_pid), postgres_backends(database)
    server_before, backends_before = cpu_seconds(server), cpu_seconds(backends)
    result = run_wrk(url, connections=connections, seconds=seconds, headers=headers)
    server_after, backends_after = cpu_seconds(server), cpu_seconds(backends)
    requests = float(result["rps"]) * seconds
    result["server_cpu_ms"] = round(spent(server_before, server_after) / requests * 1000, 3)
    result["postgres_cpu_ms"] = round(spent(backends_before, backends_after) / requests * 1000, 3)
    return result


def summary(
    label: str, workers: int, samples: list[dict[str, float | int]], pool_timeouts: int
) -> dict[str, object]:
    return {
        "endpoint": label,
        "workers": workers,
        **summarise(samples),
        "server_cpu_ms": statistics.median(float(s["server_cpu_ms"]) for s in samples),
        "postgres_cpu_ms": statistics.median(float(s["postgres_cpu_ms"]) for s in samples),
        "pool_timeouts": pool_timeouts,
    }


@dataclass(frozen=True)
class Target:
    label: str
    url: str
    pid: int
    headers: dict[str, str]


@contextlib.contextmanager
def baseline_server(python: str, env: dict[str, str], workers: int) -> Iterator[tuple[str, int]]:
    """`agentkeep serve` of another checkout (its interpreter), on the same database."""
    port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="agentkeep-baseline-"))
    full = clean_environment({**env, "LOG_LEVEL": "INFO", "LOG_FORMAT": "json"})
    full["REDIS_KEY_PREFIX"] = f"agentkeep-baseline-{secrets.token_hex(4)}"
    with (folder / "serve.log").open("wb") as log:
        command = [python, "-m", "agentkeep", "serve", "--port", str(port), "--workers", str(workers)]
        process = subprocess.Popen(command, env=full, cwd=folder, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{base}/health/live", timeout=1).status_code == 200:
                        break
                time.sleep(0.2)
            else:
                raise RuntimeError((folder / "serve.log").read_text())
            time.sleep(2 * workers)  # every worker started
            yield base, process.pid
        finally:
            process.terminate()
            process.wait(timeout=15)


def measure(
    database_url: str,
    redis_url: str,
    workers: int,
    runs: int,
    seconds: int,
    connections: int,
    *,
    first: bool,
    baseline_python: str | None = None,
) -> list[dict[str, object]]:
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "RATE_LIMIT_API": "10000000/minute",
        "RATE_LIMIT_AUTH": "1000/minute",
        "RUN_EXECUTION": "inprocess",
        "JWT_SECRET": secrets.token_urlsafe(48),  # shared with the baseline: one token for both
    }
    database = str(make_url(database_url).database)
    with running_server(env, workers=workers) as server, contextlib.ExitStack() as stack:
        token, org_id = seed(server.base_url) if first else login_only(server.base_url)
        headers = {"Authorization": f"Bearer {token}"}
        targets = [Target(OURS, f"{server.base_url}/api/agents?limit=20", server.process.pid, headers)]
        if baseline_python is not None:
            base, pid = stack.enter_context(baseline_server(baseline_python, env, workers))
            targets.append(Target(BASELINE, f"{base}/api/agents?limit=20", pid, headers))
        bare, bare_pid = stack.enter_context(bare_server(database_url, org_id, workers, pool=20))
        targets.append(Target(BARE, f"{bare}/agents", bare_pid, {}))
        for target in targets:  # warm-up
            run_wrk(target.url, connections=connections, seconds=2, headers=target.headers)
        samples: dict[str, list[dict[str, float | int]]] = {target.label: [] for target in targets}
        for round_ in range(runs):
            # Alternating order: a drift in the machine's load weighs on every target alike.
            for target in targets if round_ % 2 == 0 else targets[::-1]:
                samples[target.label].append(
                    with_cpu(target.url, target.pid, database, seconds, connections, target.headers)
                )
        statuses = list_statuses(server.base_url)
        log = server.log()
    timeouts = log.count("QueuePool limit") + log.count("database_unavailable")
    rows = [
        summary(label, workers, taken, timeouts if label == OURS else 0) for label, taken in samples.items()
    ]
    bare_rps = float(rows[-1]["rps"])  # type: ignore[arg-type]
    for row in rows[:-1]:
        row["of_bare"] = round(float(row["rps"]) / bare_rps, 3)  # type: ignore[arg-type]
    rows[0]["statuses"] = statuses
    return rows


def list_statuses(base_url: str) -> dict[str, int]:
    """What the server answered to `GET /api/agents`, by status, from its own metrics
    (wrk only counts non-2xx), warm-up and seeding included."""
    text = httpx.get(f"{base_url}/metrics", timeout=30).text
    pattern = r"^agentkeep_http_requests_total\{([^}]*)\} ([0-9.e+]+)$"
    counts: dict[str, int] = {}
    for labels, value in re.findall(pattern, text, re.MULTILINE):
        fields = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if fields.get("route") == "/api/agents" and fields.get("method") == "GET":
            counts[fields["status"]] = counts.get(fields["status"], 0) + int(float(value))
    return counts


def login_only(base_url: str) -> tuple[str, str]:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        login = client.post("/auth/login", data={"username": "bench", "password": PASSWORD})
        login.raise_for_status()
        token = login.json()["access_token"]
        listed = client.get("/api/agents?limit=20", headers={"Authorization": f"Bearer {token}"})
        listed.raise_for_status()
        return token, listed.json()["items"][0]["org_id"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1, 2], help="uvicorn worker counts, in order"
    )
    parser.add_argument(
        "--baseline-python",
        help="the interpreter of another checkout (e.g. the previous release's .venv/bin/python): "
        "its `agentkeep serve` is measured in the same alternating rounds, on the same database",
    )
    args = parser.parse_args()
    database_url = asyncio.run(create_postgres_database("agentkeep_bench_agents"))
    try:
        for index, workers in enumerate(args.workers):
            rows = measure(
                database_url,
                args.redis,
                workers,
                args.runs,
                args.seconds,
                args.connections,
                first=index == 0,
                baseline_python=args.baseline_python,
            )
            for row in rows:
                print(json.dumps(row), flush=True)
    finally:
        asyncio.run(drop_postgres_database(database_url))


if __name__ == "__main__":
    main()
