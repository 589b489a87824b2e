"""deploy/kubernetes: valid against the Kubernetes schemas (kubernetes-validate ships them, no
network), hardened, with secrets referenced and never inlined, naming only real settings and
commands, and with termination periods that cover AgentKeep's own graceful shutdown."""

from __future__ import annotations

import copy
import re
import secrets
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from agentkeep.config import load_settings
from agentkeep.security.secretbox import generate_key
from agentkeep.worker.attempt import HAND_BACK_WAIT_SECONDS
from tests.deploy.dockerfile import instructions
from tests.deploy.manifests import check_command_line, command_envvars, secret_settings, settings_names

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "deploy" / "kubernetes"
# The oldest Kubernetes the manifests support (preStop `sleep` is on by default from 1.30),
# and the newest the installed schemas know.
VERSIONS = ("1.30.0", kubernetes_validate.utils.latest_version() + ".0")
SECRET_NAME = "agentkeep-secrets"


def _documents(path: Path) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def _resources() -> list[tuple[str, dict[str, Any]]]:
    return [
        (path.name, document)
        for path in sorted(MANIFESTS.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for document in _documents(path)
    ]


def _of_kind(kind: str) -> list[dict[str, Any]]:
    return [resource for _, resource in _resources() if resource["kind"] == kind]


def _named(kind: str, name: str) -> dict[str, Any]:
    (found,) = [resource for resource in _of_kind(kind) if resource["metadata"]["name"] == name]
    return found


def _pod_templates() -> list[tuple[str, dict[str, Any]]]:
    return [
        (resource["metadata"]["name"], resource["spec"]["template"])
        for resource in _of_kind("Deployment") + _of_kind("Job")
    ]


def _containers() -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{name}/{container['name']}", container)
        for name, template in _pod_templates()
        for container in template["spec"].get("initContainers", []) + template["spec"]["containers"]
    ]


def _config() -> dict[str, str]:
    data: dict[str, str] = _named("ConfigMap", "agentkeep-config")["data"]
    return data


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_validates_strictly_against_the_kubernetes_schemas(version: str) -> None:
    resources = _resources()
    kinds = {resource["kind"] for _, resource in resources}
    assert {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "Job"} <= kinds
    assert {"NetworkPolicy", "ConfigMap"} <= kinds
    for name, resource in resources:
        try:
            kubernetes_validate.validate(resource, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(item) for item in error.path)
            pytest.fail(f"{name} {resource['kind']}: {path}: {error.message}")


def test_strict_validation_refuses_a_misspelt_field() -> None:
    # The validation is not a formality: a typo in a security setting is an error.
    deployment = copy.deepcopy(_named("Deployment", "agentkeep-api"))
    context = deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    context["readOnlyRootFileSystem"] = context.pop("readOnlyRootFilesystem")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[-1], strict=True)


def test_the_kustomization_lists_every_long_lived_manifest() -> None:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    files = {path.name for path in MANIFESTS.glob("*.yaml")} - {"kustomization.yaml"}
    # The migration Job is applied on its own before each rollout (its template is immutable).
    assert set(kustomization["resources"]) == files - {"migrate-job.yaml"}
    assert kustomization["namespace"] == "agentkeep"
    assert {
        resource["metadata"]["namespace"] for _, resource in _resources() if resource["kind"] != "Namespace"
    } == {"agentkeep"}


def test_every_pod_and_container_is_locked_down() -> None:
    final_user = [i.arguments for i in instructions(ROOT / "deploy" / "Dockerfile") if i.keyword == "USER"][
        -1
    ]
    image_uid = int(final_user.partition(":")[0])
    templates = _pod_templates()
    assert len(templates) == 3  # api, worker, migrate
    for name, template in templates:
        spec = template["spec"]
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, name
        assert pod["runAsUser"] == image_uid, name
        assert pod["runAsGroup"] != 0, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        for host in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(host), f"{name}: {host}"
        volumes = {volume["name"]: volume for volume in spec.get("volumes", [])}
        for container in spec["containers"]:
            mounts = {mount["mountPath"]: mount["name"] for mount in container.get("volumeMounts", [])}
            # A read-only root: /tmp (serve's metrics folder) is the one writable place.
            assert "emptyDir" in volumes[mounts["/tmp"]], name
    for name, container in _containers():
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False, name
        assert context["readOnlyRootFilesystem"] is True, name
        assert context.get("privileged", False) is False, name
        assert context["capabilities"] == {"drop": ["ALL"]}, name
        assert "memory" in container["resources"]["limits"], name


def test_secrets_are_referenced_never_inlined() -> None:
    assert _of_kind("Secret") == [], "the Secret is created by the operator, never kept in the repository"
    secret_names = secret_settings()
    assert {"JWT_SECRET", "AUDIT_HMAC_KEY", "SECRETS_ENCRYPTION_KEYS", "REDIS_URL"} <= secret_names
    # DATABASE_URL holds the database password: a secret even though the setting is a plain str.
    secret_names.add("DATABASE_URL")
    assert set(_config()) & secret_names == set()
    for name, container in _containers():
        for source in container.get("envFrom", []):
            assert set(source) == {"configMapRef"}, f"{name}: use secretKeyRef for each secret"
        for variable in container.get("env", []):
            assert "value" not in variable or variable["name"] not in secret_names, (
                f"{name}: {variable['name']}"
            )
            reference = variable.get("valueFrom", {}).get("secretKeyRef")
            if variable["name"] in secret_names:
                assert reference is not None, f"{name}: {variable['name']} must come from the Secret"
            if reference is not None:
                assert reference["name"] == SECRET_NAME
                assert reference["key"] == variable["name"]


def test_every_variable_the_manifests_set_is_a_real_setting() -> None:
    known = settings_names() | command_envvars()
    named = set(_config())
    for _, container in _containers():
        named |= {variable["name"] for variable in container.get("env", [])}
    assert named - known == set()


def test_the_configuration_passes_the_production_profile() -> None:
    secrets_values = {
        "database_url": "postgresql+asyncpg://agentkeep:pw@postgres.internal:5432/agentkeep",
        "redis_url": "redis://redis.internal:6379/0",
        "jwt_secret": secrets.token_urlsafe(40),
        "audit_hmac_key": secrets.token_urlsafe(48),
        "secrets_encryption_keys": generate_key(),
        "metrics_token": secrets.token_urlsafe(32),
    }
    cli_only = command_envvars()
    values = {name.lower(): value for name, value in _config().items() if name not in cli_only}
    settings = load_settings(_env_file=None, **values, **secrets_values)
    assert settings.environment == "production"


def test_container_commands_are_real_commands_with_real_options() -> None:
    seen = set()
    for _, container in _containers():
        check_command_line(container["args"])
        seen.add(container["args"][0])
    assert seen == {"serve", "worker", "migrate"}


def _api() -> dict[str, Any]:
    spec: dict[str, Any] = _named("Deployment", "agentkeep-api")["spec"]["template"]["spec"]
    return spec


def test_api_probes_use_the_health_endpoints_with_an_allowed_host() -> None:
    (container,) = _api()["containers"]
    allowed = [name.strip() for name in _config()["ALLOWED_HOSTS"].split(",")]
    expected = {
        "readinessProbe": "/health/ready",
        "livenessProbe": "/health/live",
        "startupProbe": "/health/live",
    }
    for probe, path in expected.items():
        get = container[probe]["httpGet"]
        assert get["path"] == path, probe
        assert {"name": "Host", "value": allowed[0]} in get["httpHeaders"], probe
    # Readiness timeout above HEALTH_CHECK_TIMEOUT, so a slow check reads as 503, not a timeout.
    assert container["readinessProbe"]["timeoutSeconds"] > float(_config()["HEALTH_CHECK_TIMEOUT"])


def test_api_termination_covers_the_drain_and_the_shutdown_timeout() -> None:
    spec = _api()
    (container,) = spec["containers"]
    config = _config()
    drain, timeout = int(config["SHUTDOWN_DRAIN_SECONDS"]), int(config["SHUTDOWN_TIMEOUT_SECONDS"])
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    # SIGKILL never cuts a drain or a request within its timeout (docs/OPERATIONS.md, Graceful shutdown).
    assert spec["terminationGracePeriodSeconds"] >= pre_stop + drain + timeout + 5
    # The drain outlasts the time a readiness probe needs to see it (period x failures).
    readiness = container["readinessProbe"]
    assert drain >= readiness["periodSeconds"] * readiness["failureThreshold"]


def test_worker_termination_covers_running_runs_and_their_hand_back() -> None:
    spec = _named("Deployment", "agentkeep-worker")["spec"]["template"]["spec"]
    timeout = int(_config()["SHUTDOWN_TIMEOUT_SECONDS"])
    # Runs get SHUTDOWN_TIMEOUT_SECONDS, then HAND_BACK_WAIT_SECONDS to unwind, then the hand-back
    # transactions: killed before, they wait for their lease to expire and lose an attempt.
    assert spec["terminationGracePeriodSeconds"] >= timeout + HAND_BACK_WAIT_SECONDS + 10


def test_selectors_match_their_pods() -> None:
    labels = {name: template["metadata"]["labels"] for name, template in _pod_templates()}
    api = labels["agentkeep-api"]

    def selects(selector: dict[str, str], pod: dict[str, str]) -> bool:
        return all(pod.get(key) == value for key, value in selector.items())

    service = _named("Service", "agentkeep-api")
    assert selects(service["spec"]["selector"], api)
    assert selects(service["spec"]["selector"], labels["agentkeep-worker"]) is False
    ports = {port["name"] for port in _api()["containers"][0]["ports"]}
    assert {port["targetPort"] for port in service["spec"]["ports"]} <= ports
    for budget in _of_kind("PodDisruptionBudget"):
        matched = [
            name for name, pod in labels.items() if selects(budget["spec"]["selector"]["matchLabels"], pod)
        ]
        assert matched == [budget["metadata"]["name"]]
    # Every pod is governed by a NetworkPolicy naming both directions.
    for name, pod in labels.items():
        policies = [
            policy
            for policy in _of_kind("NetworkPolicy")
            if selects(policy["spec"]["podSelector"]["matchLabels"], pod)
        ]
        assert len(policies) == 1, name
        assert set(policies[0]["spec"]["policyTypes"]) == {"Ingress", "Egress"}


def test_the_autoscaler_scales_the_api_on_cpu() -> None:
    (hpa,) = _of_kind("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "agentkeep-api",
    }
    assert [metric["resource"]["name"] for metric in hpa["spec"]["metrics"]] == ["cpu"]
    assert hpa["spec"]["minReplicas"] >= 2  # the PodDisruptionBudget keeps one through a drain
    # CPU utilisation is a share of the request: without one the autoscaler cannot act.
    assert "cpu" in _api()["containers"][0]["resources"]["requests"]


def _runbook_section() -> str:
    doc = (ROOT / "docs" / "OPERATIONS.md").read_text()
    return doc.split("### Kubernetes\n", 1)[1].split("\n### ", 1)[0]


def test_the_runbook_names_every_manifest_and_every_secret_key() -> None:
    section = _runbook_section()
    for path in MANIFESTS.glob("*.yaml"):
        assert f"| `{path.name}` |" in section, path.name
    documented = section.split("# agentkeep-secrets.env", 1)[1].split("\nkubectl", 1)[0]
    keys = set(re.findall(r"\b[A-Z][A-Z0-9_]+\b", documented))
    referenced = {
        variable["valueFrom"]["secretKeyRef"]["key"]
        for _, container in _containers()
        for variable in container.get("env", [])
        if "secretKeyRef" in variable.get("valueFrom", {})
    }
    assert keys - {"KEY"} == referenced


def test_the_runbook_migrates_as_the_job_says() -> None:
    job = (MANIFESTS / "migrate-job.yaml").read_text()
    commands = [line.removeprefix("#").strip() for line in job.splitlines() if line.startswith("#   kubectl")]
    assert len(commands) == 3
    section = _runbook_section()
    for command in commands:
        assert command in section
