"""The web console: server time per page (p50, p99) and the bytes of the chat page's first load.

    .venv/bin/python -m bench.console [--requests 200] [--postgres]

Starts a real `agentkeep serve` on loopback (SQLite in a temporary folder by default, or
with --postgres a throwaway database on the PostgreSQL server the tests use, 127.0.0.1:5432),
registers a user, creates an
agent on the offline `test` model and a thread with three finished turns, signs in through
the console's form, then requests each page --requests times, one at a time, after 20
warm-up requests. Server time is what the server measured itself (the `duration_ms` of its
JSON access line, matched by request id), so the client's scheduling does not count.

First load of the chat page: the conversation page and everything it loads (stylesheet,
scripts, icon), as a browser with an empty cache fetches them: status lines, headers and
bodies, uncompressed (the server sends no compression; a proxy in front may add it).
"""

from __future__ import annotations

import argparse
import re
import secrets
import statistics
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from tests.support.access_log import served_requests
from tests.support.databases import create_postgres_database, drop_postgres_database
from tests.support.server import Server, running_server

PASSWORD = "bench-password-" + secrets.token_hex(8)
TARGET_P50_MS = 50.0
TARGET_FIRST_LOAD_BYTES = 200 * 1024
ASSET = re.compile(r'(?:src|href)="(/static/[^"]+)"')
TOKEN = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')


@contextmanager
def server(postgres: bool) -> Iterator[Server]:
    env = {"RATE_LIMIT_API": "1000000/minute", "RATE_LIMIT_AUTH": "1000/minute", "RUN_EXECUTION": "inprocess"}
    if not postgres:
        with running_server(env) as started:
            yield started
        return
    import asyncio

    url = asyncio.run(create_postgres_database("agentkeep_bench"))
    try:
        with running_server({**env, "DATABASE_URL": url}) as started:
            yield started
    finally:
        asyncio.run(drop_postgres_database(url))


def seed(base_url: str) -> tuple[str, str, str]:
    """A user with an agent and a thread of three finished turns: (agent, thread, run) ids."""
    with httpx.Client(base_url=base_url, timeout=60) as api:
        api.post(
            "/auth/register", json={"username": "bench", "email": "bench@example.com", "password": PASSWORD}
        ).raise_for_status()
        login = api.post("/auth/login", data={"username": "bench", "password": PASSWORD})
        headers = {"Authorization": f"Bearer {login.raise_for_status().json()['access_token']}"}
        agent = api.post(
            "/api/agents",
            json={"name": "bench", "model": "test", "tools": [{"name": "calculator"}]},
            headers=headers,
        ).raise_for_status()
        agent_id = agent.json()["id"]
        thread = api.post("/api/threads", json={"agent_id": agent_id}, headers=headers).raise_for_status()
        thread_id = thread.json()["id"]
        run_id = ""
        for text in ("hello", "what is 6*7", "and once more"):
            run = api.post(f"/api/threads/{thread_id}/runs", json={"input": text}, headers=headers)
            run_id = run.raise_for_status().json()["id"]
            deadline = time.monotonic() + 60
            while api.get(f"/api/runs/{run_id}", headers=headers).json()["status"] != "completed":
                if time.monotonic() > deadline:
                    raise RuntimeError(f"run {run_id} did not complete")
                time.sleep(0.05)
        return agent_id, thread_id, run_id


def sign_in(console: httpx.Client) -> None:
    page = console.get("/login").raise_for_status()
    token = TOKEN.search(page.text)
    assert token is not None
    answer = console.post(
        "/login", data={"username": "bench", "password": PASSWORD, "csrf_token": token.group(1)}
    )
    assert answer.status_code == 303, answer.text


def first_load_bytes(console: httpx.Client, path: str) -> tuple[int, dict[str, int]]:
    """What a browser with an empty cache transfers for `path`: every response's status
    line, headers and body."""
    sizes: dict[str, int] = {}

    def size(response: httpx.Response) -> int:
        head = len(f"HTTP/1.1 {response.status_code} {response.reason_phrase}\r\n")
        head += sum(len(name) + len(value) + 4 for name, value in response.headers.raw) + 2
        return head + len(response.content)

    page = console.get(path).raise_for_status()
    sizes[path] = size(page)
    for asset in dict.fromkeys(ASSET.findall(page.text)):
        sizes[asset] = size(console.get(asset).raise_for_status())
    return sum(sizes.values()), sizes


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def measure(
    started: Server, console: httpx.Client, paths: dict[str, str], requests: int
) -> dict[str, list[float]]:
    ids: dict[str, list[str]] = {label: [] for label in paths}
    for label, path in paths.items():
        for index in range(20 + requests):
            request_id = f"bench-{uuid.uuid4().hex}"
            answer = console.get(path, headers={"X-Request-ID": request_id})
            if answer.status_code != 200:
                raise RuntimeError(f"{path}: {answer.status_code} {answer.text[:200]}")
            if index >= 20:
                ids[label].append(request_id)
    time.sleep(0.5)  # the last access lines are written just after their answers
    served = served_requests(started.log())
    return {
        label: [served[request_id].seconds * 1000 for request_id in found] for label, found in ids.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument(
        "--postgres", action="store_true", help="a database on 127.0.0.1:5432 (default: SQLite)"
    )
    args = parser.parse_args()
    with server(args.postgres) as started:
        agent_id, thread_id, run_id = seed(started.base_url)
        with httpx.Client(base_url=started.base_url, timeout=30) as console:
            sign_in(console)
            paths = {
                "home": "/",
                "agents list": "/agents",
                "agent (with diff)": f"/agents/{agent_id}",
                "agent edit form": f"/agents/{agent_id}/edit",
                "chat home": "/chat",
                "agent's threads": f"/chat/{agent_id}",
                "conversation (3 turns)": f"/threads/{thread_id}",
                "runs list": "/runs",
                "run page (events)": f"/runs/{run_id}",
                "account": "/account",
            }
            total, sizes = first_load_bytes(console, paths["conversation (3 turns)"])
            timings = measure(started, console, paths, args.requests)
    database = "PostgreSQL" if args.postgres else "SQLite"
    print(f"console pages, {database}, {args.requests} requests each, one at a time (server time, ms)")
    print(f"{'page':<26}{'p50':>8}{'p99':>8}")
    for label, values in timings.items():
        print(f"{label:<26}{statistics.median(values):>8.2f}{percentile(values, 0.99):>8.2f}")
    worst = max(statistics.median(values) for values in timings.values())
    print(f"highest p50: {worst:.2f} ms (target < {TARGET_P50_MS:.0f} ms)")
    print("first load of the chat page (bytes, headers included):")
    for name, value in sizes.items():
        print(f"  {value:>8}  {name}")
    print(f"  {total:>8}  total ({total / 1024:.1f} KiB; target < {TARGET_FIRST_LOAD_BYTES // 1024} KiB)")


if __name__ == "__main__":
    main()
