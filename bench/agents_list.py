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
and pool timeouts (read from the server logs); medians of `--runs` rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from bench.profiling import py_spy
from bench.profiling import summarise as summarise_profile
from bench.scale import fresh_database, private_postgres, statement_counts, statement_delta
from bench.wrk import OVER_1S_SCRIPT, run_wrk, summarise
from tests.support.databases import create_postgres_database, drop_postgres_database
from tests.support.server import running_server
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


def measure(
    database_url: str,
    redis_url: str,
    workers: int,
    runs: int,
    seconds: int,
    connections: int,
    profile: Path | None = None,
) -> list[dict[str, object]]:
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "RATE_LIMIT_API": "10000000/minute",
        "RATE_LIMIT_AUTH": "1000/minute",
        "RUN_EXECUTION": "inprocess",
    }
    with running_server(env, workers=workers) as server:
        token, org_id = login_only(server.base_url) if seeded(server.base_url) else seed(server.base_url)
        headers = {"Authorization": f"Bearer {token}"}
        url = f"{server.base_url}/api/agents?limit=20"
        with bare_server(database_url, org_id, workers, pool=20) as bare:
            ours: list[dict[str, float | int]] = []
            theirs: list[dict[str, float | int]] = []
            run_wrk(url, connections=connections, seconds=2, headers=headers)  # warm-up
            run_wrk(f"{bare}/agents", connections=connections, seconds=2)
            for index in range(runs):
                with py_spy(server.process.pid, profile if index == 0 else None):
                    ours.append(
                        run_wrk(
                            url,
                            connections=connections,
                            seconds=seconds,
                            headers=headers,
                            script=OVER_1S_SCRIPT,
                        )
                    )
                theirs.append(
                    run_wrk(f"{bare}/agents", connections=connections, seconds=seconds, script=OVER_1S_SCRIPT)
                )
        statuses = list_statuses(server.base_url)
        per_request = asyncio.run(statements_per_request(database_url, url, headers))
        log = server.log()
    timeouts = log.count("QueuePool limit") + log.count("database_unavailable")
    ours_row = summary("agentkeep GET /api/agents", workers, ours, timeouts)
    bare_row = summary("bare FastAPI + asyncpg", workers, theirs, 0)
    ours_row["of_bare"] = round(float(ours_row["rps"]) / float(bare_row["rps"]), 2)  # type: ignore[arg-type]
    ours_row["statuses"] = statuses
    if per_request is not None:
        ours_row["statements_per_request"] = per_request
    return [ours_row, bare_row]


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
    args = parser.parse_args()

    def rounds(database_url: str) -> None:
        for workers in args.workers:
            profile = args.profile.with_suffix(f".w{workers}.txt") if args.profile else None
            for row in measure(
                database_url, args.redis, workers, args.runs, args.seconds, args.connections, profile
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
