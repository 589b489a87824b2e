"""Start real `agentkeep serve` processes on free loopback ports (tests and benchmarks)."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from agentkeep.config import Settings
from tests.support.throwaway import free_port


@dataclass
class Server:
    base_url: str
    log_path: Path
    process: subprocess.Popen[bytes]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _cli(*args: str, env: dict[str, str], cwd: Path) -> None:
    subprocess.run([sys.executable, "-m", "agentkeep", *args], env=env, cwd=cwd, check=True, timeout=120)


def _wait_until_serving(base_url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    """Return once the application answers HTTP at all; fail if it exits or never answers.

    Any answer counts: with ALLOWED_HOSTS set, a probe addressed to 127.0.0.1 is refused with
    400, and that refusal already comes from the started application.
    """
    deadline = time.monotonic() + 90  # a loaded host can take long to import and start
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(f"{base_url}/health/live", timeout=1)
            return
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {log_path.read_text()}")
        time.sleep(0.1)
    raise RuntimeError(f"server did not answer within 90 s: {log_path.read_text()}")


@contextlib.contextmanager
def running_server(
    extra_env: dict[str, str] | None = None,
    workers: int = 1,
    migrate: bool = True,
    workdir: Path | None = None,
) -> Iterator[Server]:
    """Migrate and serve with the given settings; stop the process (and its files) on exit.

    Servers given the same `workdir` and `extra_env` share one SQLite file (or database).
    """
    owned = workdir is None
    workdir = workdir or Path(tempfile.mkdtemp(prefix="agentkeep-server-"))
    env = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    env.update(
        {
            "JWT_SECRET": (extra_env or {}).get("JWT_SECRET", secrets.token_urlsafe(48)),
            "DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'bench.db'}",
            "LOG_LEVEL": "WARNING",
            "REDIS_KEY_PREFIX": f"agentkeep-proc-{secrets.token_hex(4)}",
        }
    )
    env.update(extra_env or {})
    if migrate:
        _cli("migrate", env=env, cwd=workdir)
    port = free_port()
    log_path = workdir / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "agentkeep", "serve", "--port", str(port), "--workers", str(workers)],
            env=env,
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base_url = f"http://127.0.0.1:{port}"
        try:
            _wait_until_serving(base_url, process, log_path)
            yield Server(base_url=base_url, log_path=log_path, process=process)
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
            if owned:
                shutil.rmtree(workdir, ignore_errors=True)
