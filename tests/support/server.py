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


class PortTaken(RuntimeError):
    """The server could not listen: another process holds its port."""


def listening_pid_holds(pid: int, port: int) -> bool:
    """Whether process `pid` holds the socket listening on loopback port `port` (Linux /proc).

    An answer on the port alone does not prove the server is ours: a free port picked by
    another test at the same moment may be served by that test's process while ours fails to
    bind it."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[1].endswith(f":{port:04X}"):  # LISTEN
                    inodes.add(f"socket:[{fields[9]}]")
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                if os.readlink(fd) in inodes:
                    return True
    return False


def _wait_until_serving(
    base_url: str, port: int, process: subprocess.Popen[bytes], log_path: Path, workers: int
) -> None:
    """Return once the application answers HTTP on a socket this process holds, and with
    several workers once every one has started; fail if the server exits or is not up in time
    (`PortTaken` when it exited because another process holds its port).

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
                answered = listening_pid_holds(process.pid, port)
        if answered and (workers == 1 or log_path.read_text(errors="replace").count(STARTED_LINE) >= workers):
            return
        if process.poll() is not None:
            log = log_path.read_text(errors="replace")
            if "address already in use" in log.lower():
                raise PortTaken(f"port {port} is taken: {log[-2000:]}")
            raise RuntimeError(f"server exited: {log}")
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
    # A port picked free can be taken by another test before the server binds it: then
    # another free one (a port given by the caller is kept, and its loss is an error).
    attempts = 1 if port else 3
    try:
        for attempt in range(1, attempts + 1):
            chosen = port or free_port()
            base_url = f"http://127.0.0.1:{chosen}"
            log_path = process_log("agentkeep-serve")
            with log_path.open("wb") as log:
                process = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "agentkeep",
                        "serve",
                        "--port",
                        str(chosen),
                        "--workers",
                        str(workers),
                    ],
                    env=env,
                    cwd=workdir,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            try:
                try:
                    _wait_until_serving(base_url, chosen, process, log_path, workers)
                except PortTaken:
                    if attempt == attempts:
                        raise
                    continue
                yield Server(base_url=base_url, log_path=log_path, process=process)
                return
            finally:
                _stop(process)
    finally:
        scan_database(env["DATABASE_URL"], "of a test server", last=True)
        if owned:
            shutil.rmtree(workdir, ignore_errors=True)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)
