"""What the backup and upgrade drills share: the runbook's command blocks as docs/OPERATIONS.md
writes them, a database populated through the real API, and what the API then answers.

A drill populates a database through a real server, takes a snapshot of everything the API
shows about it, does the operation (backup and restore, upgrade), and compares the snapshot
a server on the result answers with the one taken before.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from tests.support.processes import AGENTKEEP, clean_environment, process_log, run_logged

ROOT = Path(__file__).resolve().parents[2]
OPERATIONS = ROOT / "docs" / "OPERATIONS.md"
PASSWORD = "a long passphrase 42"
TERMINAL = {"completed", "failed", "cancelled", "expired"}


def runbook_block(name: str) -> str:
    """The shell block docs/OPERATIONS.md marks `<!-- runbook: NAME -->`, exactly as written."""
    text = OPERATIONS.read_text()
    match = re.search(rf"<!-- runbook: {re.escape(name)} -->\n```sh\n(.*?)\n```", text, flags=re.DOTALL)
    assert match, f"docs/OPERATIONS.md has no runbook block {name!r}"
    return match.group(1)


def runbook_line(name: str, starting: str) -> str:
    """The one line of a runbook block that starts with `starting`."""
    lines = [line for line in runbook_block(name).splitlines() if line.startswith(starting)]
    assert len(lines) == 1, f"runbook block {name!r}: {lines}"
    return lines[0]


def run_shell(
    script: str, *, name: str, cwd: Path, env: Mapping[str, str]
) -> subprocess.CompletedProcess[str]:
    """Run runbook commands with bash as an operator would, `agentkeep` on the PATH."""
    path = f"{Path(sys.executable).parent}:{clean_environment().get('PATH', '/usr/bin:/bin')}"
    return run_logged(
        ["bash", "-euo", "pipefail", "-c", script], name=name, cwd=cwd, env={**env, "PATH": path}, timeout=300
    )


@contextlib.contextmanager
def running_worker(env: Mapping[str, str], python_path: Path | None = None) -> Iterator[None]:
    """An `agentkeep worker` (of another release's code when `python_path` is given)."""
    full = clean_environment(env)
    if python_path is not None:
        full["PYTHONPATH"] = str(python_path)
    with process_log("agentkeep-worker").open("wb") as log:
        process = subprocess.Popen([*AGENTKEEP, "worker"], env=full, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def login(http: httpx.Client, username: str = "alice") -> dict[str, str]:
    answer = http.post("/auth/login", data={"username": username, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def register(http: httpx.Client, username: str = "alice") -> dict[str, str]:
    answer = http.post(
        "/auth/register",
        json={"username": username, "email": f"{username}@example.com", "password": PASSWORD},
    )
    assert answer.status_code == 201, answer.text
    return login(http, username)


def create_agent(http: httpx.Client, auth: dict[str, str], name: str) -> dict[str, Any]:
    answer = http.post(
        "/api/agents",
        headers=auth,
        json={
            "name": name,
            "model": "test",
            "system_prompt": "You do arithmetic.",
            "tools": [{"name": "calculator"}],
        },
    )
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


def wait_for_run(
    http: httpx.Client, auth: dict[str, str], run_id: str, seconds: float = 120
) -> dict[str, Any]:
    """The run once it has finished (a loaded host: a wide bound, not a timing assertion)."""
    deadline = time.monotonic() + seconds
    while True:
        answer = http.get(f"/api/runs/{run_id}", headers=auth)
        assert answer.status_code == 200, answer.text
        run: dict[str, Any] = answer.json()
        if run["status"] in TERMINAL:
            return run
        assert time.monotonic() < deadline, f"run {run_id} still {run['status']}"
        time.sleep(0.2)


def populate(http: httpx.Client, *, threads: bool = True) -> dict[str, str]:
    """A user, two agents (one changed: two versions), a standalone run and, with `threads`,
    a thread with two turns; every run finished. Returns the user's credentials."""
    auth = register(http)
    math = create_agent(http, auth, "math")
    changed = http.patch(f"/api/agents/{math['id']}", headers=auth, json={"description": "now versioned"})
    assert changed.status_code == 200, changed.text
    create_agent(http, auth, "spare")
    run = http.post(f"/api/agents/{math['id']}/runs", headers=auth, json={"input": "What is 6 * 7?"})
    assert run.status_code == 202, run.text
    assert wait_for_run(http, auth, run.json()["id"])["status"] == "completed"
    if threads:
        thread = http.post("/api/threads", headers=auth, json={"agent_id": math["id"], "title": "Drill"})
        assert thread.status_code == 201, thread.text
        for said in ("What is 2 + 3?", "And 5 * 5?"):
            turn = http.post(f"/api/threads/{thread.json()['id']}/runs", headers=auth, json={"input": said})
            assert turn.status_code == 202, turn.text
            assert wait_for_run(http, auth, turn.json()["id"])["status"] == "completed"
    return auth


def _all_pages(http: httpx.Client, auth: dict[str, str], path: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    params: dict[str, str] = {"limit": "100"}
    while True:
        answer = http.get(path, headers=auth, params=params)
        assert answer.status_code == 200, f"{path}: {answer.text}"
        page = answer.json()
        items.extend(page["items"])
        if page["next_cursor"] is None:
            return items
        params = {"limit": "100", "cursor": page["next_cursor"]}


def run_events(http: httpx.Client, auth: dict[str, str], run_id: str) -> list[dict[str, Any]]:
    """A finished run's whole event stream (the server closes it after the last event)."""
    events: list[dict[str, Any]] = []
    with http.stream("GET", f"/api/runs/{run_id}/events", headers=auth) as stream:
        assert stream.status_code == 200
        for line in stream.iter_lines():
            if line.startswith("data:"):
                events.append(json.loads(line.removeprefix("data:")))
    return events


def snapshot(http: httpx.Client, auth: dict[str, str], *, threads: bool = True) -> dict[str, Any]:
    """Everything the API shows the user: agents and versions, runs and their events, threads
    and their messages, and the organization's audit records (by id)."""
    agents = _all_pages(http, auth, "/api/agents")
    runs = _all_pages(http, auth, "/api/runs")
    shown: dict[str, Any] = {
        "agents": {agent["id"]: agent for agent in agents},
        "versions": {
            agent["id"]: _all_pages(http, auth, f"/api/agents/{agent['id']}/versions") for agent in agents
        },
        "runs": {run["id"]: run for run in runs},
        "events": {run["id"]: run_events(http, auth, run["id"]) for run in runs},
        "audit": {record["id"]: record for record in _all_pages(http, auth, "/api/audit-logs")},
    }
    if threads:
        listed = _all_pages(http, auth, "/api/threads")
        shown["threads"] = {thread["id"]: thread for thread in listed}
        shown["messages"] = {
            thread["id"]: _all_pages(http, auth, f"/api/threads/{thread['id']}/messages") for thread in listed
        }
    return shown


def sealed_snapshot(http: httpx.Client, auth: dict[str, str], *, threads: bool = True) -> dict[str, Any]:
    """A snapshot once the server's sealer has chained every audit record in it (a record's
    sequence and hash appear when it is sealed, within a second or so)."""
    deadline = time.monotonic() + 60
    while True:
        shown = snapshot(http, auth, threads=threads)
        if all(record["sequence"] is not None for record in shown["audit"].values()):
            return shown
        assert time.monotonic() < deadline, "audit records stayed unsealed"
        time.sleep(0.5)


def assert_contains(later: dict[str, Any], earlier: dict[str, Any]) -> None:
    """Every object the earlier snapshot showed is shown again, with the same content."""
    for section, objects in earlier.items():
        for key, value in objects.items():
            assert key in later[section], f"{section}: {key} is missing"
            assert later[section][key] == value, f"{section}: {key} differs"
