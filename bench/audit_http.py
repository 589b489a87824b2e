"""The cost of auditing on a real audited write over HTTP: `POST /api/agents` (authentication,
revocation check, rate limit, validation, the insert of the agent and its first version, and
its `agent_created` audit record) against the same server with the audit write removed, side
by side in one run (alternating rounds), on PostgreSQL + Redis.

    .venv/bin/python -m bench.audit_http [--seconds 8] [--runs 5] [--connections 16]

Each server is a real uvicorn process on its own scratch database. The unaudited one is the
same application with `AuditService.record` replaced by a no-op in this benchmark's process
only (there is no setting that turns auditing off). Load comes from wrk with a Lua script
that gives every request a unique agent name.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from agentkeep.config import Settings
from bench.wrk import run_wrk, summarise
from tests.support.databases import create_postgres_database, drop_postgres_database
from tests.support.throwaway import free_port

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = str(Path(__file__).resolve().parent / "create_agents.lua")
PASSWORD = "bench-password-" + secrets.token_hex(8)


def serve(port: int, audited: bool) -> None:
    """Run one server in this process (called in a subprocess)."""
    import uvicorn

    from agentkeep.app import app_from_environment
    from agentkeep.audit.service import AuditService

    if not audited:

        async def no_record(self: AuditService, action: Any, **fields: Any) -> None:
            return None

        AuditService.record = no_record  # type: ignore[assignment,method-assign]
    app = app_from_environment()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


@contextlib.contextmanager
def server(database_url: str, redis_url: str, audited: bool) -> Iterator[str]:
    folder = Path(tempfile.mkdtemp(prefix="agentkeep-audit-http-"))
    env = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    env.update(
        {
            "JWT_SECRET": secrets.token_urlsafe(48),
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "REDIS_KEY_PREFIX": f"bench-{secrets.token_hex(4)}",
            "RATE_LIMIT_API": "10000000/minute",
            "RATE_LIMIT_AUTH": "1000/minute",
            "RUN_EXECUTION": "inprocess",
            "LOG_LEVEL": "WARNING",
        }
    )
    subprocess.run(
        [sys.executable, "-m", "agentkeep", "migrate"], env=env, cwd=folder, check=True, timeout=300
    )
    port = free_port()
    mode = "audited" if audited else "unaudited"
    with (folder / "server.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.audit_http", "--serve", mode, "--port", str(port)],
            env={**env, "PYTHONPATH": str(ROOT)},
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{base}/health/live", timeout=1).status_code == 200:
                        break
                if process.poll() is not None:
                    raise RuntimeError((folder / "server.log").read_text())
                time.sleep(0.2)
            yield base
        finally:
            process.terminate()
            process.wait(timeout=30)


def token(base: str) -> str:
    with httpx.Client(base_url=base, timeout=30) as client:
        user = {"username": "bench", "email": "bench@example.com", "password": PASSWORD}
        client.post("/auth/register", json=user).raise_for_status()
        login = client.post("/auth/login", data={"username": "bench", "password": PASSWORD})
        login.raise_for_status()
        return str(login.json()["access_token"])


async def audit_count(database_url: str) -> int:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    engine = create_async_engine(database_url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            return int((await connection.execute(text("SELECT count(*) FROM audit_logs"))).scalar_one())
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--serve", choices=["audited", "unaudited"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.port, args.serve == "audited")
        return
    urls = [asyncio.run(create_postgres_database("agentkeep_bench_audit_http")) for _ in range(2)]
    try:
        with server(urls[0], args.redis, True) as audited, server(urls[1], args.redis, False) as unaudited:
            targets = {"audited": audited, "unaudited": unaudited}
            headers = {name: {"Authorization": f"Bearer {token(base)}"} for name, base in targets.items()}
            samples: dict[str, list[dict[str, float | int]]] = {name: [] for name in targets}
            for round_ in range(args.runs + 1):
                for name, base in targets.items():
                    result = run_wrk(
                        f"{base}/api/agents",
                        connections=args.connections,
                        seconds=args.seconds if round_ else 2,
                        headers=headers[name],
                        script=SCRIPT,
                        script_args=(f"r{round_}",),
                    )
                    if round_:  # round 0 warms both up
                        samples[name].append(result)
            time.sleep(1)  # the sealer's last batch
        records = asyncio.run(audit_count(urls[0]))
    finally:
        for url in urls:
            asyncio.run(drop_postgres_database(url))
    rows = {}
    for name, runs in samples.items():
        rows[name] = {"mode": name, **summarise(runs)}
    paired = [
        1 - float(a["rps"]) / float(u["rps"])
        for a, u in zip(samples["audited"], samples["unaudited"], strict=True)
    ]
    rows["audited"]["cost_of_medians"] = round(1 - rows["audited"]["rps"] / rows["unaudited"]["rps"], 3)
    rows["audited"]["cost_paired_median"] = round(statistics.median(paired), 3)
    rows["audited"]["audit_records"] = records
    for row in rows.values():
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
