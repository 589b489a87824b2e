"""A load-balanced deployment on loopback: nginx (deploy/nginx.conf), two `agentkeep serve`
instances and one `agentkeep worker`, on a fresh PostgreSQL database and the shared Redis,
in the production profile.

Every client of the tests connects from its own loopback address (127.0.0.2, 127.0.0.3, ...):
nginx connects to the instances from 127.0.0.1, the only address in TRUSTED_PROXIES, so what
the instances record as the client address tells whether they believed X-Forwarded-For.
"""

from __future__ import annotations

import contextlib
import secrets
import signal
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from agentkeep.security.secretbox import generate_key
from tests.support.databases import REDIS_URL
from tests.support.nginx import PUBLIC_HOST, Certificate, Nginx, running_nginx, throwaway_certificate
from tests.support.processes import clean_environment, process_log, run_agentkeep
from tests.support.server import Server, running_server
from tests.support.throwaway import free_port

# Long enough that nginx (keepalive_timeout 4s) has closed every idle connection it had to a
# draining instance before the instance stops accepting; see deploy/nginx.conf.
DRAIN_SECONDS = 5
ADMIN = "operator"
ADMIN_PASSWORD = "an operator's long passphrase 7"


def production_env(database_url: str) -> dict[str, str]:
    """What every process of the deployment shares: one secret, one Redis namespace."""
    return {
        "ENVIRONMENT": "production",
        "JWT_SECRET": secrets.token_urlsafe(48),
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        "REDIS_KEY_PREFIX": f"agentkeep-lb-{secrets.token_hex(6)}",
        "ALLOWED_HOSTS": PUBLIC_HOST,
        "CORS_ORIGINS": "https://console.example.com",
        # nginx's address towards the instances, and nothing else.
        "TRUSTED_PROXIES": "127.0.0.1",
        "AUDIT_HMAC_KEY": secrets.token_urlsafe(40),
        "SECRETS_ENCRYPTION_KEYS": generate_key(),
        "ALLOW_REGISTRATION": "true",
        "RATE_LIMIT_AUTH": "5/minute",
        # The load of the rolling restart must meet the instances, not the per-user limit.
        "RATE_LIMIT_API": "100000/minute",
        "SHUTDOWN_DRAIN_SECONDS": str(DRAIN_SECONDS),
        "SHUTDOWN_TIMEOUT_SECONDS": "20",
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
    }


@dataclass
class LoadBalanced:
    env: dict[str, str]
    workdir: Path
    stack: ExitStack
    ports: list[int]
    certificate: Certificate
    # The instance serving each slot now (a restart replaces it).
    servers: dict[int, Server] = field(default_factory=dict)
    nginx: Nginx | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def proxy(self) -> Nginx:
        assert self.nginx is not None
        return self.nginx

    def cli(self, *args: str, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return run_agentkeep(*args, cwd=self.workdir, env={**self.env, **(extra or {})}, timeout=120)

    def start_instance(self, slot: int) -> Server:
        """Instance `slot` on its fixed port (where nginx's upstream names it)."""
        folder = self.workdir / f"instance-{slot}"
        folder.mkdir(parents=True, exist_ok=True)
        # Entered here and stopped with the deployment; instances may start in parallel.
        instance = running_server(self.env, migrate=False, workdir=folder, port=self.ports[slot])
        server = instance.__enter__()
        with self._lock:
            self.stack.push(instance.__exit__)
            self.servers[slot] = server
        return server

    def stop_quickly(self) -> None:
        """SIGINT to every instance: it skips the drain (the test is over, nobody is served)."""
        for server in self.servers.values():
            if server.process.poll() is None:
                server.process.send_signal(signal.SIGINT)

    def trust(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.certificate.cert))

    def client(self, source: str, **options: object) -> httpx.AsyncClient:
        """A client of the public HTTPS endpoint, connecting from `source`."""
        transport = httpx.AsyncHTTPTransport(local_address=source, verify=self.trust())
        return httpx.AsyncClient(
            base_url=f"https://127.0.0.1:{self.proxy.https_port}",
            headers={"Host": PUBLIC_HOST},
            transport=transport,
            timeout=60,
            **options,  # type: ignore[arg-type]
        )

    def plain_client(self, source: str) -> httpx.AsyncClient:
        """A client of nginx's plain-HTTP port (which only redirects)."""
        return httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{self.proxy.http_port}",
            headers={"Host": PUBLIC_HOST},
            transport=httpx.AsyncHTTPTransport(local_address=source),
            timeout=60,
        )

    def direct(self, slot: int, source: str) -> httpx.AsyncClient:
        """A client that bypasses nginx and talks to instance `slot` itself."""
        return httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{self.ports[slot]}",
            headers={"Host": PUBLIC_HOST},
            transport=httpx.AsyncHTTPTransport(local_address=source),
            timeout=60,
        )


@contextlib.contextmanager
def worker_process(env: dict[str, str], cwd: Path) -> Iterator[subprocess.Popen[bytes]]:
    log_path = process_log("agentkeep-worker")
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "agentkeep", "worker"],
            env=clean_environment(env),
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


@contextlib.contextmanager
def load_balanced(database_url: str, workdir: Path) -> Iterator[LoadBalanced]:
    """Migrate, create the administrator, start the worker, both instances and nginx."""
    with ExitStack() as stack:
        deployment = LoadBalanced(
            env=production_env(database_url),
            workdir=workdir,
            stack=stack,
            ports=[free_port(), free_port()],
            certificate=throwaway_certificate(workdir),
        )
        migrated = deployment.cli("migrate")
        assert migrated.returncode == 0, migrated.stderr
        stack.enter_context(worker_process(deployment.env, workdir))
        # Starting processes is the slow part on a busy host: all at once.
        with ThreadPoolExecutor(max_workers=3) as pool:
            admin = pool.submit(
                deployment.cli,
                *("create-admin", "--username", ADMIN, "--email", "operator@example.com"),
                extra={"AGENTKEEP_ADMIN_PASSWORD": ADMIN_PASSWORD},
            )
            instances = [
                pool.submit(deployment.start_instance, slot) for slot in range(len(deployment.ports))
            ]
            for started in instances:
                started.result()
            assert admin.result().returncode == 0, admin.result().stderr
        upstreams = [f"127.0.0.1:{port}" for port in deployment.ports]
        deployment.nginx = stack.enter_context(
            running_nginx(upstreams, deployment.certificate, free_port(), free_port())
        )
        try:
            yield deployment
        finally:
            deployment.stop_quickly()
