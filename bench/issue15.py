"""Run the issue 15 benchmarks one after another and print the table of figures, targets,
measurements and verdicts (the one in bench/README.md).

    .venv/bin/python -m bench.issue15 [--out results-folder] [--only runs_at_scale overload ...]
    .venv/bin/python -m bench.issue15 --table-only --out results-folder   # table from saved output

Each benchmark runs as its own process with its defaults (see each module) and its output
is saved as <out>/<name>.jsonl; a benchmark that fails is reported and the others still
run. About 20 minutes on 2 cores. The verdicts compare with the targets of the issue;
"report" rows have no target.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCHMARKS: dict[str, list[str]] = {
    "runs_at_scale": [],
    "queue_rate": [],
    "run_creation": [],
    "event_streams": [],
    "cancel_latency": [],
    "agents_list": ["--private-postgres"],
    "idle": [],
    "idle_serve_workers_2": ["--serve-workers", "2"],
    "overload": [],
}
MODULES = {"idle_serve_workers_2": "idle"}


def run_all(out: Path, only: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, arguments in BENCHMARKS.items():
        if only and name not in only:
            continue
        module = MODULES.get(name, name)
        started = time.monotonic()
        print(f"{name}: running", file=sys.stderr, flush=True)
        result = subprocess.run(
            [sys.executable, "-m", f"bench.{module}", *arguments], capture_output=True, text=True, check=False
        )
        (out / f"{name}.jsonl").write_text(result.stdout)
        (out / f"{name}.log").write_text(result.stderr)
        status = "ok" if result.returncode == 0 else f"failed ({result.returncode}), see {name}.log"
        print(f"{name}: {status} in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)


def rows_of(out: Path, name: str) -> list[dict[str, Any]]:
    path = out / f"{name}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


Row = tuple[str, str, str, str]


def verdict(ok: bool | None) -> str:
    return "report" if ok is None else ("met" if ok else "**missed**")


def at_scale(out: Path) -> list[Row]:
    found = rows_of(out, "runs_at_scale")
    if not found:
        return [("1,000 runs x 2 model calls of 1 s, one worker", "", "not run", "")]
    r = found[-1]
    return [
        (
            "1,000 runs x 2 calls of 1 s: wall time (floor 2 s)",
            "< 15 s",
            f"{r['wall_s']} s",
            verdict(r["wall_s"] < 15),
        ),
        (
            "  completed correctly",
            "all",
            f"{r['completed_correctly']} / {r['runs']}",
            verdict(r["completed_correctly"] == r["runs"]),
        ),
        (
            "  PostgreSQL connections held by the worker (max)",
            "<= 20",
            f"{r['worker_max_pg_connections']} ({_apps(r['worker_max_pg_connections_by_app'])})",
            verdict(r["worker_max_pg_connections"] <= 20),
        ),
        ("  worker peak RSS", "report", f"{r['worker_peak_rss_mib']} MiB", verdict(None)),
        (
            "  worker CPU per run (2 model calls over HTTP)",
            "< 20 ms",
            f"{r['worker_cpu_ms_per_run']} ms",
            verdict(r["worker_cpu_ms_per_run"] < 20),
        ),
        (
            "  queue wait p50 / API creation of the 1,000",
            "report",
            f"{r['queue_wait_s'].get('p50')} s / {r['create_s']} s (RUN_CONCURRENCY {r['run_concurrency']})",
            verdict(None),
        ),
    ]


def _apps(by_app: dict[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in sorted(by_app.items()))


def queue_rate(out: Path) -> list[Row]:
    rows: list[Row] = []
    for r in rows_of(out, "queue_rate"):
        target = ">= 100 /s" if r["workers"] == 2 else "report"
        rows.append(
            (
                f"runs/s through the queue, `test` model, {r['workers']} worker(s), RUN_CONCURRENCY "
                f"{r['run_concurrency']}",
                target,
                f"{r['runs_per_s']} /s ({r['completed']} / {r['runs']} completed)",
                verdict(r["runs_per_s"] >= 100 if r["workers"] == 2 else None),
            )
        )
        rows.append(
            (
                f"  worker CPU per run, `test` model, {r['workers']} worker(s)",
                "< 20 ms",
                f"{r['worker_cpu_ms_per_run']} ms ({r['statements_per_run']} statements/run)",
                verdict(r["worker_cpu_ms_per_run"] < 20),
            )
        )
    return rows or [("runs/s through the queue", "", "not run", "")]


def creation(out: Path) -> list[Row]:
    found = rows_of(out, "run_creation")
    if not found:
        return [("1,000 run creations through the API", "", "not run", "")]
    r = found[-1]
    duplicates = r["queue"]["runs_with_duplicate_jobs"] + r["queue_after_replays"]["runs_with_duplicate_jobs"]
    return [
        (
            "1,000 run creations, 50 clients, Idempotency-Key each",
            "< 5 s",
            f"{r['wall_s']} s ({r['per_s']} /s, p99 {r['latency_ms']['p99']:.0f} ms)",
            verdict(r["wall_s"] < 5),
        ),
        (
            "  duplicate jobs in the queue (after 100 replays too)",
            "0",
            f"{duplicates} (runs without a job: {r['queue']['runs_without_job']})",
            verdict(duplicates == 0 and r["queue"]["runs_without_job"] == 0),
        ),
    ]


def streams(out: Path) -> list[Row]:
    found = rows_of(out, "event_streams")
    if not found:
        return [("1,000 event streams on one serve", "", "not run", "")]
    r = found[-1]
    idle, events = r["idle"], r["events"]
    p99 = events["commit_to_client_ms"]["p99"]
    return [
        (
            "1,000 open streams, idle: statements/s from the streams",
            "0",
            f"{idle['stream_reads_per_s']} (all statements: {idle['statements_per_s']}/s)",
            verdict(idle["stream_reads_per_s"] == 0),
        ),
        (
            "  idle: serve CPU",
            "< 5 %",
            f"{idle['serve_cpu_percent']} %",
            verdict(idle["serve_cpu_percent"] < 5),
        ),
        (
            "  runs appending events: commit-to-client p99",
            "< 250 ms",
            f"{p99} ms (p50 {events['commit_to_client_ms']['p50']} ms, "
            f"{events['events_committed_per_s']} events/s, "
            f"{events['committed_not_received']} lost)",
            verdict(p99 < 250),
        ),
    ]


def cancel(out: Path) -> list[Row]:
    found = rows_of(out, "cancel_latency")
    if not found:
        return [("cancel latency", "", "not run", "")]
    r = found[-1]
    quiet = r["quiet_while_running"]
    return [
        (
            f"cancel latency (request to `cancelled` on the stream), {r['runs']} running runs",
            "p50 < 200 ms",
            f"p50 {r['cancel_to_event_ms']['p50']:.0f} ms, p99 {r['cancel_to_event_ms']['p99']:.0f} ms",
            verdict(r["cancel_to_event_ms"]["p50"] < 200),
        ),
        (
            "  statements/s while they wait on the model (no per-run poll)",
            "not per run",
            f"{quiet['statements_per_s']}/s for {r['runs']} runs",
            verdict(quiet["statements_per_s"] < r["runs"] / 2),
        ),
    ]


def agents(out: Path) -> list[Row]:
    found = rows_of(out, "agents_list")
    ours = [r for r in found if r["endpoint"].startswith("agentkeep")]
    rows: list[Row] = []
    for r in ours:
        errors = r["non_2xx"] + r["socket_errors"] + r["pool_timeouts"]
        rows.append(
            (
                f"`GET /api/agents`, 64 connections, {r['workers']} worker(s): share of bare",
                ">= 40 % (50 %)",
                f"{round(100 * r['of_bare'])} % ({r['rps']} /s)",
                verdict(r["of_bare"] >= 0.4),
            )
        )
        rows.append(
            (
                f"  p99 / errors / requests over 1 s, {r['workers']} worker(s)",
                "< 150 ms / 0 / 0",
                f"{r['p99_ms']} ms / {errors} / {r.get('over_1s', '?')}",
                verdict(r["p99_ms"] < 150 and errors == 0 and r.get("over_1s", 1) == 0),
            )
        )
    return rows or [("`GET /api/agents` against bare", "", "not run", "")]


def idle(out: Path) -> list[Row]:
    rows: list[Row] = []
    for name in ("idle", "idle_serve_workers_2"):
        for r in rows_of(out, name):
            rows.append(
                (
                    f"idle `serve` (--workers {r['serve_workers']}, all its processes) / idle `worker`, CPU",
                    "< 1 % each",
                    f"{r['serve_cpu_percent']} % / {r['worker_cpu_percent']} %",
                    verdict(r["serve_cpu_percent"] < r["serve_workers"] and r["worker_cpu_percent"] < 1),
                )
            )
    return rows or [("idle processes", "", "not run", "")]


def overload(out: Path) -> list[Row]:
    found = [r for r in rows_of(out, "overload") if "medians_of" in r]
    if not found:
        return [("overload at 1,000 connections", "", "not run", "")]
    m = found[-1]
    return [
        (
            "overload, 1,000 connections, 2 workers: admitted p99",
            "< 250 ms",
            f"{m['admitted_p99_ms']} ms (p50 {m['admitted_p50_ms']} ms)",
            verdict(m["admitted_p99_ms"] < 250),
        ),
        (
            "  refusals (503) p50 / p99",
            "< 10 ms",
            f"{m['refused_p50_ms']} / {m['refused_p99_ms']} ms",
            verdict(m["refused_p99_ms"] < 10),
        ),
        (
            "  `/health/live` p50 / p99 during it",
            "fast",
            f"{m['health_live_p50_ms']} / {m['health_live_p99_ms']} ms",
            verdict(None),
        ),
        (
            "  200s per second vs the c=64 figure",
            ">= c=64",
            f"{m['overload_ok_per_s']} vs {m['c64_rps']} /s",
            verdict(m["overload_ok_per_s"] >= m["c64_rps"]),
        ),
    ]


SECTIONS: list[Callable[[Path], list[Row]]] = [
    at_scale,
    queue_rate,
    creation,
    streams,
    cancel,
    agents,
    idle,
    overload,
]


def table(out: Path) -> str:
    lines = ["| figure | target | measured | verdict |", "|---|---|---|---|"]
    for section in SECTIONS:
        try:
            rows = section(out)
        except (KeyError, TypeError, ValueError) as error:
            rows = [(section.__name__, "", f"unreadable output: {error!r}", "")]
        lines += [f"| {' | '.join(cells)} |" for cells in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=None, help="where the outputs go (default: a new folder)")
    parser.add_argument("--only", nargs="+", default=[], choices=list(BENCHMARKS))
    parser.add_argument("--table-only", action="store_true", help="only print the table of saved outputs")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="agentkeep-issue15-"))
    if not args.table_only:
        print(f"outputs in {out}", file=sys.stderr)
        run_all(out, args.only)
    print(table(out))


if __name__ == "__main__":
    main()
