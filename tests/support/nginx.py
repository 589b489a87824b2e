"""nginx from Debian's package in front of real `agentkeep serve` processes, on loopback.

The configuration is the repository's own deploy/nginx.conf. `render` changes only what an
operator changes in it (the listening addresses, the upstream `server` lines, the certificate
paths) and adds where this nginx keeps its temporary files; every other line (timeouts,
forwarded headers, retries, buffering, the redirect) is what operators run. Each change must
match exactly as often as expected, so a restructured file fails here instead of being
silently tested in a stale shape.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import re
import shlex
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.peers import require_binary
from tests.support.processes import process_log

ROOT = Path(__file__).resolve().parents[2]
NGINX_CONF = ROOT / "deploy" / "nginx.conf"
PUBLIC_HOST = "agents.example.com"
# Debian's nginx was built with temporary paths under /var/lib/nginx; a test's nginx keeps
# them in its own prefix (relative paths are resolved against `-p`).
TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path


def throwaway_certificate(folder: Path, host: str = PUBLIC_HOST) -> Certificate:
    """A self-signed certificate for `host` and 127.0.0.1, valid for a day: its own trust anchor."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(host), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    paths = Certificate(cert=folder / "fullchain.pem", key=folder / "privkey.pem")
    paths.cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    paths.key.chmod(0o600)
    return paths


def _replace(text: str, pattern: str, replacement: str, count: int) -> str:
    result, found = re.subn(pattern, replacement, text, flags=re.MULTILINE)
    if found != count:
        raise AssertionError(f"deploy/nginx.conf: expected {count} match(es) of {pattern!r}, found {found}")
    return result


def render(
    conf: str,
    *,
    http_port: int,
    https_port: int,
    upstreams: Sequence[str],
    certificate: Certificate,
) -> str:
    """deploy/nginx.conf with this test's addresses: what an operator edits, nothing else."""
    # Loopback only; the IPv6 twins are dropped (a test host may have no IPv6).
    conf = _replace(conf, r"^(\s*)listen 80;$", rf"\1listen 127.0.0.1:{http_port};", 1)
    conf = _replace(conf, r"^\s*listen \[::\]:80;\n", "", 1)
    conf = _replace(conf, r"^(\s*)listen 443 ssl http2;$", rf"\1listen 127.0.0.1:{https_port} ssl http2;", 1)
    conf = _replace(conf, r"^\s*listen \[::\]:443 ssl http2;\n", "", 1)
    servers = "".join(f"\\1server {address};\n" for address in upstreams)
    conf = _replace(conf, r"^(\s*)server api:8000;\n", servers, 1)
    conf = _replace(conf, r"^(\s*)ssl_certificate \S+;$", rf"\1ssl_certificate {certificate.cert};", 1)
    conf = _replace(conf, r"^(\s*)ssl_certificate_key \S+;$", rf"\1ssl_certificate_key {certificate.key};", 1)
    temp = "".join(f"    {kind}_temp_path temp/{kind};\n" for kind in TEMP_PATHS)
    return _replace(conf, r"^http \{\n", f"http {{\n{temp}", 1)


def nginx_command(binary: str, prefix: Path, conf: Path, *args: str, foreground: bool = False) -> list[str]:
    """`nginx` with a test's own prefix and configuration (for -t, -s reload, serving)."""
    # nginx keeps only the last -g: the main-context directives go in one.
    directives = f"pid {prefix / 'nginx.pid'};" + (" daemon off;" if foreground else "")
    return [binary, "-p", f"{prefix}/", "-c", str(conf), "-e", "stderr", "-g", directives, *args]


@dataclass
class Nginx:
    binary: str
    prefix: Path
    conf: Path
    http_port: int
    https_port: int
    log_path: Path
    process: subprocess.Popen[bytes]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def command(self, *args: str) -> list[str]:
        return nginx_command(self.binary, self.prefix, self.conf, *args)


def runbook_environment(nginx: Nginx, certificate: Certificate, folder: Path) -> dict[str, str]:
    """Where the runbook's commands, run as written, reach this test's deployment.

    `nginx` on PATH is this instance's binary with its prefix and configuration (an operator's
    is at the default paths); curl resolves the public host name to nginx's loopback ports and
    trusts the throwaway certificate (an operator's DNS and CA do that).
    """
    bin_dir = folder / "bin"
    bin_dir.mkdir(exist_ok=True)
    shim = bin_dir / "nginx"
    shim.write_text("#!/bin/sh\nexec " + " ".join(shlex.quote(part) for part in nginx.command()) + ' "$@"\n')
    shim.chmod(0o755)
    (folder / ".curlrc").write_text(
        f"connect-to = {PUBLIC_HOST}:80:127.0.0.1:{nginx.http_port}\n"
        f"connect-to = {PUBLIC_HOST}:443:127.0.0.1:{nginx.https_port}\n"
        f'cacert = "{certificate.cert}"\n'
    )
    path = os.environ.get("PATH", "/usr/bin:/bin")
    return {"PATH": f"{bin_dir}:{path}:/usr/sbin", "CURL_HOME": str(folder), "HOME": str(folder)}


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited: {log_path.read_text(errors='replace')}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nginx did not listen within 30 s: {log_path.read_text(errors='replace')}")


@contextlib.contextmanager
def running_nginx(
    upstreams: Sequence[str], certificate: Certificate, http_port: int, https_port: int
) -> Iterator[Nginx]:
    """deploy/nginx.conf rendered for `upstreams`, in the foreground with its own prefix."""
    binary = require_binary("nginx", "/usr/sbin/nginx")
    prefix = Path(tempfile.mkdtemp(prefix="agentkeep-nginx-"))
    (prefix / "temp").mkdir()
    conf = prefix / "nginx.conf"
    conf.write_text(
        render(
            NGINX_CONF.read_text(),
            http_port=http_port,
            https_port=https_port,
            upstreams=upstreams,
            certificate=certificate,
        )
    )
    log_path = process_log("nginx")
    with log_path.open("wb") as log:
        checked = subprocess.run(
            nginx_command(binary, prefix, conf, "-t"), capture_output=True, text=True, timeout=30, check=False
        )
        if checked.returncode != 0:
            raise AssertionError(f"nginx -t refused the rendered deploy/nginx.conf: {checked.stderr}")
        process = subprocess.Popen(
            nginx_command(binary, prefix, conf, foreground=True), stdout=log, stderr=subprocess.STDOUT
        )
        nginx = Nginx(binary, prefix, conf, http_port, https_port, log_path, process)
        try:
            _wait_for_port(https_port, nginx.process, log_path)
            _wait_for_port(http_port, nginx.process, log_path)
            yield nginx
        finally:
            # SIGQUIT: graceful stop (SIGTERM would be nginx's fast shutdown).
            nginx.process.send_signal(signal.SIGQUIT)
            try:
                nginx.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                nginx.process.kill()
                nginx.process.wait(timeout=5)
