"""deploy/systemd: `systemd-analyze verify` accepts the units without a warning, `systemd-analyze
security` rates them well hardened, and what they run and how long they wait to stop match
AgentKeep's commands and its graceful shutdown.

systemd is not PID 1 here (a container), so the units are checked, never started: verify loads
them as systemd would (every directive parsed, the ExecStart binary resolved) and the offline
security analysis reads the same directives systemd would apply."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from agentkeep.config import Settings
from agentkeep.worker.attempt import HAND_BACK_WAIT_SECONDS
from tests.deploy.manifests import check_command_line, secret_settings
from tests.support.peers import require_binary

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"
INSTALLED = "/opt/agentkeep/bin/agentkeep"
SERVICES = ("agentkeep-api", "agentkeep-worker")
# What each long-running unit must set (systemd.exec(5)), value as written.
HARDENING = {
    "NoNewPrivileges": "yes",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "RestrictNamespaces": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "SystemCallArchitectures": "native",
    "KillSignal": "SIGTERM",
}
# `systemd-analyze security` exposure, 0 (locked down) to 10, times ten: at most 2.0.
EXPOSURE_THRESHOLD = 20


def _directives(path: Path) -> dict[str, list[str]]:
    """Every `Key=value` of a unit, all values of a repeated key in order."""
    found: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        found.setdefault(key.strip(), []).append(value.strip())
    return found


def _unit_files() -> list[Path]:
    return sorted(UNITS.glob("*.service"))


@pytest.fixture
def rendered(tmp_path: Path) -> Path:
    """The units as installed on this machine: ExecStart names this checkout's agentkeep (verify
    refuses a unit whose binary does not exist), nothing else changed."""
    agentkeep = Path(sys.executable).parent / "agentkeep"
    assert agentkeep.exists()
    for unit in _unit_files():
        text = unit.read_text()
        assert INSTALLED in text, unit.name
        (tmp_path / unit.name).write_text(text.replace(INSTALLED, str(agentkeep)))
    return tmp_path


def _analyze(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    binary = require_binary("systemd-analyze")
    return subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_systemd_analyze_verify_accepts_every_unit_without_a_warning(rendered: Path) -> None:
    names = [unit.name for unit in _unit_files()]
    assert {f"{service}.service" for service in SERVICES} <= set(names)
    verified = _analyze("verify", *names, cwd=rendered)
    assert verified.returncode == 0, verified.stderr
    # A misspelt key or a bad value is only a warning (exit 0): any output is a failure here.
    assert verified.stdout + verified.stderr == ""


def test_verify_reports_a_misspelt_hardening_option(rendered: Path) -> None:
    unit = rendered / "agentkeep-api.service"
    unit.write_text(unit.read_text().replace("ProtectSystem=strict", "ProtectSystem=strictest"))
    verified = _analyze("verify", unit.name, cwd=rendered)
    assert "ProtectSystem" in verified.stderr or "protect system" in verified.stderr


@pytest.mark.parametrize("service", [*SERVICES, "agentkeep-migrate"])
def test_systemd_rates_every_unit_well_hardened(rendered: Path, service: str) -> None:
    rated = _analyze(
        "security", "--offline=yes", f"--threshold={EXPOSURE_THRESHOLD}", f"{service}.service", cwd=rendered
    )
    assert rated.returncode == 0, rated.stdout[-3000:] + rated.stderr


@pytest.mark.parametrize("service", SERVICES)
def test_long_running_units_carry_the_hardening_options(service: str) -> None:
    directives = _directives(UNITS / f"{service}.service")
    for key, value in HARDENING.items():
        assert directives.get(key) == [value], f"{service}: {key}"
    assert directives["SystemCallFilter"][0] == "@system-service"
    assert directives["User"] == ["agentkeep"]
    assert directives["Restart"] == ["on-failure"]
    # An unsafe configuration (exit 78) is not fixed by restarting.
    assert directives["RestartPreventExitStatus"] == ["78"]


def test_units_read_secrets_from_the_environment_file_only() -> None:
    secrets = secret_settings() | {"DATABASE_URL"}
    for unit in _unit_files():
        directives = _directives(unit)
        assert directives["EnvironmentFile"] == ["/etc/agentkeep/agentkeep.env"], unit.name
        for assignment in directives.get("Environment", []):
            for word in shlex.split(assignment):
                assert word.partition("=")[0] not in secrets, f"{unit.name}: {word}"


def test_units_run_real_commands() -> None:
    commands = {}
    for unit in _unit_files():
        (exec_start,) = _directives(unit)["ExecStart"]
        program, *args = shlex.split(exec_start)
        assert program == INSTALLED
        check_command_line(args)
        commands[unit.stem] = args[0]
    assert commands == {
        "agentkeep-api": "serve",
        "agentkeep-worker": "worker",
        "agentkeep-migrate": "migrate",
    }


def _seconds(value: str) -> int:
    assert value.isdigit(), f"TimeoutStopSec={value}: plain seconds expected"
    return int(value)


def test_the_api_stop_timeout_covers_a_drain_and_the_shutdown_timeout() -> None:
    directives = _directives(UNITS / "agentkeep-api.service")
    assert directives["KillMode"] == ["mixed"]  # SIGTERM to serve alone: it tells its workers
    shutdown = Settings.model_fields["shutdown_timeout_seconds"].default
    # Room for the drain docs/OPERATIONS.md recommends behind a load balancer (10 s).
    assert _seconds(directives["TimeoutStopSec"][0]) >= 10 + shutdown + 5


def test_the_worker_stop_timeout_covers_running_runs_and_their_hand_back() -> None:
    directives = _directives(UNITS / "agentkeep-worker.service")
    shutdown = Settings.model_fields["shutdown_timeout_seconds"].default
    assert _seconds(directives["TimeoutStopSec"][0]) >= shutdown + HAND_BACK_WAIT_SECONDS + 10


def _runbook_section() -> str:
    doc = (ROOT / "docs" / "OPERATIONS.md").read_text()
    return doc.split("### systemd\n", 1)[1].split("\n## ", 1)[0]


def test_the_runbook_installs_every_unit_and_states_the_rating_systemd_gives(rendered: Path) -> None:
    section = _runbook_section()
    assert "sudo install -m 0644 deploy/systemd/agentkeep-*.service /etc/systemd/system/" in section
    for unit in _unit_files():
        assert f"`{unit.name}`" in section, unit.name
    match = re.search(r"`systemd-analyze security agentkeep-api` \(([0-9.]+) of 10", section)
    assert match is not None
    rated = _analyze("security", "--offline=yes", "agentkeep-api.service", cwd=rendered)
    exposure = re.search(r"Overall exposure level for agentkeep-api\.service: ([0-9.]+)", rated.stdout)
    assert exposure is not None, rated.stdout[-2000:]
    assert float(exposure.group(1)) <= float(match.group(1))
