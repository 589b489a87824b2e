"""The fixes report's connection-pool test: 100 concurrent connections on GET /health
(which queries the database) against a real `agentkeep serve`, on SQLite and PostgreSQL.

    .venv/bin/python -m bench.health_load [--seconds 10] [--runs 3] [--postgres URL]

Load comes from wrk (apt-get install wrk). Reports requests/s, latency percentiles,
non-2xx answers, socket errors and pool timeouts (read from the server log). Medians of
`--runs` runs.
"""

from __future__ import annotations

import argparse
import json

from bench.wrk import run_wrk, summarise
from tests.support.server import running_server


def run(database_url: str | None, label: str, runs: int, seconds: int, connections: int) -> dict[str, object]:
    env = {"DATABASE_URL": database_url} if database_url else {}
    samples = []
    with running_server(env) as server:
        run_wrk(f"{server.base_url}/health", connections=connections, seconds=2)  # warm-up
        for _ in range(runs):
            samples.append(run_wrk(f"{server.base_url}/health", connections=connections, seconds=seconds))
        log = server.log()
    return {
        "database": label,
        "connections": connections,
        **summarise(samples),
        "pool_timeouts": log.count("QueuePool limit") + log.count("database_unavailable"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--postgres", help="postgresql+asyncpg:// URL of an empty, migratable database")
    args = parser.parse_args()
    print(json.dumps(run(None, "sqlite", args.runs, args.seconds, args.connections)))
    if args.postgres:
        print(json.dumps(run(args.postgres, "postgresql", args.runs, args.seconds, args.connections)))


if __name__ == "__main__":
    main()
