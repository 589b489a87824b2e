"""Drive a load with wrk (a separate C process: Python clients saturate first on 2 cores)."""

from __future__ import annotations

import re
import shutil
import statistics
import subprocess
from collections.abc import Sequence
from pathlib import Path

OVER_1S_SCRIPT = str(Path(__file__).with_name("wrk_over_1s.lua"))
STATUSES_SCRIPT = str(Path(__file__).with_name("wrk_statuses.lua"))
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value.strip())
    if match is None:
        raise ValueError(f"wrk printed an unexpected latency: {value!r}")
    number, unit = match.groups()
    return round(float(number) * _UNITS[unit], 2)


def run_wrk(
    url: str,
    *,
    connections: int,
    seconds: int,
    threads: int = 2,
    headers: dict[str, str] | None = None,
    script: str | None = None,
    script_args: tuple[str, ...] = (),
    timeout: str | None = None,
) -> dict[str, float | int]:
    """Run wrk against `url`; return requests/s, p50/p99 latency (ms) and error counts."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is required for this benchmark: apt-get install wrk")
    header_args = [arg for name, value in (headers or {}).items() for arg in ("-H", f"{name}: {value}")]
    if script is not None:
        header_args += ["-s", script]
    if timeout is not None:
        header_args += ["--timeout", timeout]
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            *header_args,
            url,
            *(("--", *script_args) if script_args else ()),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 90,
    ).stdout
    result: dict[str, float | int] = {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": _ms(re.search(r"^\s*50%\s+(\S+)", out, re.MULTILINE).group(1)),  # type: ignore[union-attr]
        "p99_ms": _ms(re.search(r"^\s*99%\s+(\S+)", out, re.MULTILINE).group(1)),  # type: ignore[union-attr]
        "non_2xx": 0,
        "socket_errors": 0,
    }
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if non_2xx:
        result["non_2xx"] = int(non_2xx.group(1))
    errors = re.search(r"connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if errors:
        result["socket_errors"] = sum(int(part) for part in errors.groups())
    # Printed by wrk_over_1s.lua / wrk_statuses.lua.
    over = re.search(r"^over_1s: (\d+)$", out, re.MULTILINE)
    if over:
        result["over_1s"] = int(over.group(1))
    for status, count in re.findall(r"^status (\d+): (\d+)$", out, re.MULTILINE):
        result[f"status_{status}"] = int(count)
    total = re.search(r"(\d+) requests in ([\d.]+)(s|m)", out)
    if total:
        result["requests"] = int(total.group(1))
    return result


def summarise(samples: Sequence[dict[str, float | int]]) -> dict[str, float | int]:
    """Several wrk runs in one row: medians of throughput and latency, sums of the errors."""
    return {
        "rps": round(statistics.median(float(s["rps"]) for s in samples), 1),
        "p50_ms": statistics.median(float(s["p50_ms"]) for s in samples),
        "p99_ms": statistics.median(float(s["p99_ms"]) for s in samples),
        "non_2xx": sum(int(s["non_2xx"]) for s in samples),
        "socket_errors": sum(int(s["socket_errors"]) for s in samples),
        **{
            key: sum(int(s.get(key, 0)) for s in samples)
            for key in sorted(
                {key for s in samples for key in s if key == "over_1s" or key.startswith("status_")}
            )
        },
    }
