"""Start real `agentkeep serve` processes on free loopback ports (tests and benchmarks)."""

from __future__ import annotations

import contextlib
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

from tests.support.processes import clean_environment, process_log, remember_credentials, run_agentkeep
from tests.support.secret_scan import scan_database
from tests.support.throwaway import free_port


@dataclass
class Server:
    base_url: str
    log_path: Path
    process: subprocess.Popen[bytes]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _cli(*args: str, env: dict[str, str], cwd: Path) -> None:
    result = run_agentkeep(*args, env=env, cwd=cwd, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"agentkeep {' '.join(args)} failed: {result.stdout}{result.stderr}")


# uvicorn logs this (at INFO) in each worker process once its application has started.
STARTED_LINE = "Application startup complete."


def _wait_until_serving(
    base_url: str, process: subprocess.Popen[bytes], log_path: Path, workers: int
) -> None:
    """Return once the application answers HTTP, and with several workers once every one has
    started; fail if the server exits or is not up in time.

    Any answer counts: with ALLOWED_HOSTS set, a probe addressed to 127.0.0.1 is refused with
    400, and that refusal already comes from the started application. The first answer comes
    from whichever worker started first, so with several the log tells when all have.
    """
    deadline = time.monotonic() + 90  # a loaded host can take long to import and start
    answered = False
    while time.monotonic() < deadline:
        if not answered:
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(f"{base_url}/health/live", timeout=1)
                answered = True
        if answered and (workers == 1 or log_path.read_text(errors="replace").count(STARTED_LINE) >= workers):
            return
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {log_path.read_text()}")
        time.sleep(0.1)
    raise RuntimeError(f"server was not up within 90 s: {log_path.read_text()}")


@contextlib.contextmanager
def running_server(
    extra_env: dict[str, str] | None = None,
    workers: int = 1,
    migrate: bool = True,
    workdir: Path | None = None,
    port: int | None = None,
) -> Iterator[Server]:
    """Migrate and serve with the given settings; stop the process (and its files) on exit.

    `port` (a free one by default) lets a restarted instance take its predecessor's place
    behind a load balancer.

    Servers given the same `workdir` and `extra_env` share one SQLite file (or database).
    The server logs as in production (JSON at INFO) to a file the secret scan reads, which
    also searches the server's database before its files are removed.
    """
    owned = workdir is None
    workdir = workdir or Path(tempfile.mkdtemp(prefix="agentkeep-server-"))
    env = clean_environment(
        {
            "JWT_SECRET": (extra_env or {}).get("JWT_SECRET", secrets.token_urlsafe(48)),
            "DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'bench.db'}",
            # The production profile; with several workers, INFO also shows when each has
            # started (see _wait_until_serving).
            "LOG_LEVEL": "INFO",
            "LOG_FORMAT": "json",
            "REDIS_KEY_PREFIX": f"agentkeep-proc-{secrets.token_hex(4)}",
        }
    )
    env.update(extra_env or {})
    remember_credentials((), env)
    if workers > 1 and env["LOG_LEVEL"] not in {"DEBUG", "INFO"}:
        raise ValueError("with several workers the log level must show each worker's start")
    if migrate:
        _cli("migrate", env=env, cwd=workdir)
    port = port or free_port()
    log_path = process_log("agentkeep-serve")
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
            _wait_until_serving(base_url, process, log_path, workers)
            yield Server(base_url=base_url, log_path=log_path, process=process)
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
            scan_database(env["DATABASE_URL"], f"of the server at {base_url}", last=True)
            if owned:
                shutil.rmtree(workdir, ignore_errors=True)
