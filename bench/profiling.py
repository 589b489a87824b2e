"""py-spy around a benchmark phase, and a summary of its samples by package and function.

    .venv/bin/python -m bench.profiling collapsed-stacks.txt   # summarise a saved profile

py-spy (`pip install py-spy`) samples the process from outside; idle threads are not
recorded, so the samples are where the process spent CPU. The summary gives, per package,
the share of samples whose innermost frame is in it (self) and the share that pass through
it at all (inclusive), and the functions with the most self samples.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")
PACKAGES = (
    "agentkeep", "pydantic_ai", "pydantic_graph", "pydantic_core", "pydantic", "openai", "httpx2", "httpx",
    "httpcore", "h11", "anyio", "sqlalchemy", "asyncpg", "procrastinate", "psycopg_pool", "psycopg",
    "structlog", "logging", "json", "uvloop", "asyncio", "opentelemetry", "prometheus_client", "ssl",
    "fastapi", "starlette", "uvicorn", "redis", "limits", "jwt", "orjson", "typing", "importlib",
)  # fmt: skip


@contextlib.contextmanager
def py_spy(pid: int, output: Path | None, rate: int = 67) -> Iterator[None]:
    """Record `pid` with py-spy for the duration of the block (nothing if `output` is None)."""
    if output is None:
        yield
        return
    binary = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    process = subprocess.Popen(
        [binary, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
         "--output", str(output), "--nonblocking", "--subprocesses"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield
    finally:
        process.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl+C
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


def package_of(file: str) -> str:
    parts = file.replace("\\", "/").split("/")
    if "site-packages" in parts:
        parts = parts[parts.index("site-packages") + 1 :]
    for name in parts:
        stem = name.removesuffix(".py")
        if stem in PACKAGES:
            return stem
    if "src" in parts and "agentkeep" in parts:
        return "agentkeep"
    return parts[0].removesuffix(".py") if len(parts) == 1 else "python"


def summarise(path: Path, top: int = 25) -> str:
    self_by_package: Counter[str] = Counter()
    inclusive_by_package: Counter[str] = Counter()
    self_by_function: Counter[str] = Counter()
    inclusive_by_function: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [FRAME.match(frame) for frame in stack.split(";")]
        parsed = [(m.group("function"), m.group("file")) for m in frames if m is not None]
        if not parsed:
            continue
        total += count
        function, file = parsed[-1]
        self_by_package[package_of(file)] += count
        self_by_function[f"{function} ({Path(file).name})"] += count
        for package in {package_of(f) for _, f in parsed}:
            inclusive_by_package[package] += count
        for name in {f"{fn} ({Path(f).name})" for fn, f in parsed if package_of(f) == "agentkeep"}:
            inclusive_by_function[name] += count
    if not total:
        return "no samples"
    lines = [f"{total} samples", "", "package: self % / inclusive %"]
    for package, count in inclusive_by_package.most_common():
        lines.append(
            f"  {package:<20} {100 * self_by_package[package] / total:5.1f} / {100 * count / total:5.1f}"
        )
    lines += ["", "functions, self %"]
    lines += [f"  {100 * n / total:5.1f}  {name}" for name, n in self_by_function.most_common(top)]
    lines += ["", "agentkeep functions, inclusive %"]
    lines += [f"  {100 * n / total:5.1f}  {name}" for name, n in inclusive_by_function.most_common(top)]
    return "\n".join(lines)


if __name__ == "__main__":
    print(summarise(Path(sys.argv[1])))
