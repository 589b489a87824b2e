"""Authenticated, tenant-scoped `GET /api/agents` (20 agents) on PostgreSQL against a bare
FastAPI + asyncpg endpoint returning the same rows, at 64 concurrent connections, with 1 and
2 uvicorn workers, side by side in one run (alternating rounds).

    .venv/bin/python -m bench.agents_list [--seconds 8] [--runs 3] [--connections 64]
        [--postgres postgresql+asyncpg://postgres@127.0.0.1:5432/postgres]
        [--redis redis://127.0.0.1:6379/0]

AgentKeep runs with everything on: JWT verification, the revocation check against the
database, the per-user rate limit in Redis (its budget raised so the load is not refused),
the organization membership lookup, security headers, metrics and the access log. Load
comes from wrk (apt-get install wrk). Reports requests/s, p50/p99, non-2xx, socket errors
and pool timeouts (read from the server logs); medians of `--runs` rounds; the share of the
bare endpoint as the median of each round's ratio; serve's CPU per request (all its processes).

`--baseline-src DIR` (the `src` folder of another checkout) runs that checkout's `serve` beside
this one, on the same database, Redis and settings, measured in turn in every round: the row
of this one adds the medians of its per-round ratios to the other (throughput, CPU).
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
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.profiling import py_spy
from bench.profiling import summarise as summarise_profile
from bench.scale import cpu_seconds, fresh_database, private_postgres, statement_counts, statement_delta
from bench.wrk import OVER_1S_SCRIPT, run_wrk, summarise
from tests.support.databases import create_postgres_database, drop_postgres_database
from tests.support.server import Server, running_server
from tests.support.throwaway import free_port

PASSWORD = "bench-password-" + secrets.token_hex(8)


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
def bare_server(database_url: str, org_id: str, workers: int, pool: int) -> Iterator[str]:
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
            yield base
        finally:
            process.terminate()
            process.wait(timeout=15)


def summary(
    label: str, workers: int, samples: list[dict[str, float | int]], pool_timeouts: int
) -> dict[str, object]:
    return {
        "endpoint": label,
        "workers": workers,
        **summarise(samples),
        "pool_timeouts": pool_timeouts,
    }


@dataclass
class Target:
    """One AgentKeep `serve` under test: this checkout's, or another's (`--baseline-src`)."""

    code: str
    server: Server
    url: str
    headers: dict[str, str]
    samples: list[dict[str, float | int]] = field(default_factory=list)
    cpu_ms_per_request: list[float] = field(default_factory=list)


def measure(
    database_url: str,
    redis_url: str,
    workers: int,
    runs: int,
    seconds: int,
    connections: int,
    profile: Path | None = None,
    baseline: Path | None = None,
) -> list[dict[str, object]]:
    """`runs` alternating rounds: this `serve`, the baseline's (when given), the bare endpoint.
    Ratios to the bare endpoint are medians of each round's ratio (the host's load moves
    all three together within a round, not between rounds)."""
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "RATE_LIMIT_API": "10000000/minute",
        "RATE_LIMIT_AUTH": "1000/minute",
        "RUN_EXECUTION": "inprocess",
    }
    codes = [("this", env)]
    if baseline is not None:
        codes.append(("baseline", {**env, "PYTHONPATH": str(baseline)}))
    with contextlib.ExitStack() as stack:
        targets: list[Target] = []
        org_id = ""
        for code, code_env in codes:
            server = stack.enter_context(running_server(code_env, workers=workers))
            token, org_id = login_only(server.base_url) if seeded(server.base_url) else seed(server.base_url)
            targets.append(
                Target(
                    code,
                    server,
                    f"{server.base_url}/api/agents?limit=20",
                    {"Authorization": f"Bearer {token}"},
                )
            )
        bare = stack.enter_context(bare_server(database_url, org_id, workers, pool=20))
        theirs: list[dict[str, float | int]] = []
        for target in targets:  # warm-up
            run_wrk(target.url, connections=connections, seconds=2, headers=target.headers)
        run_wrk(f"{bare}/agents", connections=connections, seconds=2)
        for index in range(runs):
            for target in targets:
                cpu_before = cpu_seconds(target.server.process.pid)
                with py_spy(
                    target.server.process.pid, profile if index == 0 and target.code == "this" else None
                ):
                    sample = run_wrk(
                        target.url,
                        connections=connections,
                        seconds=seconds,
                        headers=target.headers,
                        script=OVER_1S_SCRIPT,
                    )
                cpu = cpu_seconds(target.server.process.pid) - cpu_before
                target.samples.append(sample)
                target.cpu_ms_per_request.append(1000 * cpu / max(1, int(sample.get("requests", 0))))
            theirs.append(
                run_wrk(f"{bare}/agents", connections=connections, seconds=seconds, script=OVER_1S_SCRIPT)
            )
        rows: list[dict[str, object]] = []
        for target in targets:
            statuses = list_statuses(target.server.base_url)
            per_request = asyncio.run(statements_per_request(database_url, target.url, target.headers))
            log = target.server.log()
            timeouts = log.count("QueuePool limit") + log.count("database_unavailable")
            label = "agentkeep GET /api/agents" + (f" ({target.code})" if baseline is not None else "")
            row = summary(label, workers, target.samples, timeouts)
            ratios = [float(o["rps"]) / float(t["rps"]) for o, t in zip(target.samples, theirs, strict=True)]
            row["of_bare"] = round(statistics.median(ratios), 3)
            row["of_bare_rounds"] = [round(ratio, 3) for ratio in ratios]
            row["serve_cpu_ms_per_request"] = round(statistics.median(target.cpu_ms_per_request), 3)
            row["statuses"] = statuses
            if per_request is not None:
                row["statements_per_request"] = per_request
            rows.append(row)
        if baseline is not None:
            this, other = targets
            pairs = zip(this.samples, other.samples, strict=True)
            rows[0]["of_baseline_rounds"] = [round(float(a["rps"]) / float(b["rps"]), 3) for a, b in pairs]
            rows[0]["of_baseline"] = round(statistics.median(rows[0]["of_baseline_rounds"]), 3)  # type: ignore[arg-type]
            cpu_pairs = zip(this.cpu_ms_per_request, other.cpu_ms_per_request, strict=True)
            rows[0]["cpu_of_baseline"] = round(statistics.median(a / b for a, b in cpu_pairs), 3)
    rows.append(summary("bare FastAPI + asyncpg", workers, theirs, 0))
    return rows


async def statements_per_request(
    database_url: str, url: str, headers: dict[str, str]
) -> dict[str, object] | None:
    """On a server that keeps pg_stat_statements: the statements 100 sequential requests
    made, per request (None elsewhere)."""
    try:
        before = await statement_counts(database_url)
    except Exception:
        return None  # no pg_stat_statements here
    async with httpx.AsyncClient(headers=headers, timeout=30) as client:
        for _ in range(100):
            (await client.get(url)).raise_for_status()
    delta = statement_delta(before, await statement_counts(database_url), top=8)
    return {"per_request": round(int(delta["statements"]) / 100, 2), "top": delta["top"]}


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


def seeded(base_url: str) -> bool:
    """Whether an earlier round already registered the user (and created the agents)."""
    login = httpx.post(f"{base_url}/auth/login", data={"username": "bench", "password": PASSWORD}, timeout=30)
    return login.status_code == 200


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
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--private-postgres",
        action="store_true",
        help="a private cluster (bench/scale.py) instead of the shared server; adds statements per request",
    )
    parser.add_argument("--profile", type=Path, help="py-spy serve in the first round (.w<workers>.txt)")
    parser.add_argument(
        "--baseline-src",
        type=Path,
        help="another checkout's src/: its serve measured in the same rounds, alternating with this one",
    )
    args = parser.parse_args()

    def rounds(database_url: str) -> None:
        for workers in args.workers:
            profile = args.profile.with_suffix(f".w{workers}.txt") if args.profile else None
            baseline = args.baseline_src.resolve() if args.baseline_src else None
            for row in measure(
                database_url,
                args.redis,
                workers,
                args.runs,
                args.seconds,
                args.connections,
                profile,
                baseline,
            ):
                print(json.dumps(row), flush=True)
            if profile is not None:
                print(summarise_profile(profile))

    if args.private_postgres:
        with (
            private_postgres() as admin_url,
            fresh_database(admin_url, "agentkeep_bench_agents") as database_url,
        ):
            rounds(database_url)
        return
    database_url = asyncio.run(create_postgres_database("agentkeep_bench_agents"))
    try:
        rounds(database_url)
    finally:
        asyncio.run(drop_postgres_database(database_url))


if __name__ == "__main__":
    main()
