"""Throwaway PostgreSQL and Redis servers on free loopback ports, for tests that stop them.

Tests that break a service never touch the shared ones: they start their own here. Without
the server binaries such a test skips locally and fails when AGENTKEEP_TEST_REQUIRE_SERVICES
is set (CI), like every test that needs PostgreSQL or Redis.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.support.databases import unavailable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _find(binary: str) -> str | None:
    found = shutil.which(binary)
    if found:
        return found
    for root in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (root / binary).exists():
            return str(root / binary)
    return None


def postgres_binaries_available() -> bool:
    if os.geteuid() == 0 and (shutil.which("runuser") is None or not _has_account("postgres")):
        return False  # initdb refuses root: it must run as `postgres`
    return _find("initdb") is not None and _find("pg_ctl") is not None


def _has_account(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _processes_under(root: int) -> list[int]:
    """`root` and every process descended from it (the postmaster and its backends)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # The command name (field 2) may hold spaces; the fields after its ")" do not.
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, pending = [], [root]
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending.extend(children.get(pid, []))
    return found


class ThrowawayPostgres:
    """A private PostgreSQL cluster in a temporary folder (run as `postgres` when root)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="agentkeep-pg-"))
        self.data = self.dir / "data"
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            # initdb refuses to run as root.
            account = pwd.getpwnam("postgres")
            os.chown(self.dir, account.pw_uid, account.pw_gid)
            self._as_user = ["runuser", "-u", "postgres", "--"]

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as_user, *args], check=True, capture_output=True, timeout=120)

    def init(self) -> ThrowawayPostgres:
        initdb = _find("initdb")
        assert initdb
        self._run(initdb, "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")
        return self

    def start(self) -> None:
        pg_ctl = _find("pg_ctl")
        assert pg_ctl
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c fsync=off"
        self._run(pg_ctl, "-D", str(self.data), "-o", options, "-l", str(self.dir / "log"), "-w", "start")

    def stop(self) -> None:
        """Immediate shutdown: every backend is killed, clients see their connections drop."""
        pg_ctl = _find("pg_ctl")
        assert pg_ctl
        self._run(pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def postmaster_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def freeze(self) -> list[int]:
        """SIGSTOP the postmaster and every backend: connections are accepted by the kernel
        and then nothing answers, like a server hung on I/O or a paused VM."""
        frozen = _processes_under(self.postmaster_pid())
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        return frozen

    def thaw(self, frozen: list[int]) -> None:
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def running_postgres() -> Iterator[ThrowawayPostgres]:
    """A started throwaway PostgreSQL, destroyed afterwards; unavailable without its binaries."""
    if not postgres_binaries_available():
        unavailable("PostgreSQL server binaries (initdb, pg_ctl)")
    server = ThrowawayPostgres().init()
    try:
        server.start()
        yield server
    finally:
        with contextlib.suppress(OSError, ValueError):
            server.thaw(_processes_under(server.postmaster_pid()))  # a test that failed frozen
        server.destroy()


@contextlib.contextmanager
def running_redis() -> Iterator[ThrowawayRedis]:
    """A started throwaway redis-server, stopped afterwards; unavailable without the binary."""
    if shutil.which("redis-server") is None:
        unavailable("redis-server")
    server = ThrowawayRedis()
    server.start()
    try:
        yield server
    finally:
        server.stop()


class ThrowawayRedis:
    """A private redis-server on a free port, keeping nothing on disk."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed"
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("throwaway redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            # A server a test froze (SIGSTOP) would never act on the SIGTERM.
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None
