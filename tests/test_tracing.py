"""Optional tracing: with OTEL_EXPORTER_OTLP_ENDPOINT set, request and SQL spans reach an
OTLP/HTTP collector; without the `otel` extra, the process refuses to start."""

from __future__ import annotations

import secrets
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from agentkeep.app import create_app
from agentkeep.config import ConfigError, Settings, load_settings
from agentkeep.observability.tracing import TRACING_MODULES
from tests.support.processes import run_logged


class Collector:
    """A loopback OTLP/HTTP receiver that keeps every span it is sent."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.spans: list[tuple[str, dict[str, object], str]] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                collector.paths.append(self.path)
                request = ExportTraceServiceRequest.FromString(body)
                for resource_spans in request.resource_spans:
                    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                    for scope_spans in resource_spans.scope_spans:
                        for span in scope_spans.spans:
                            attributes: dict[str, object] = {
                                a.key: a.value.string_value or a.value.int_value for a in span.attributes
                            }
                            collector.spans.append((span.name, attributes, service["service.name"]))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def collector() -> Iterator[Collector]:
    receiver = Collector()
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


@pytest.fixture
def traced_settings(settings: Settings, collector: Collector) -> Settings:
    return settings.model_copy(
        update={"otel_exporter_otlp_endpoint": collector.url + "/", "otel_service_name": "agentkeep-test"}
    )


async def test_a_request_and_its_sql_are_exported_with_the_route_template(
    traced_settings: Settings, collector: Collector
) -> None:
    app = create_app(traced_settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            org_id = "8f14e45f-ceea-467f-a0e6-1bd1c0f3a1f2"
            assert (await http.get(f"/api/orgs/{org_id}")).status_code == 401
            response = await http.post(
                "/auth/register",
                json={"username": "tracy", "email": "tracy@example.com", "password": "a long passphrase 77"},
            )
            assert response.status_code == 201
            assert (await http.get("/health/live")).status_code == 200
        assert app.state.tracing.force_flush()
    assert set(collector.paths) == {"/v1/traces"}
    names = [name for name, _, _ in collector.spans]
    assert "GET /api/orgs/{org_id}" in names
    assert "POST /auth/register" in names
    (org_span,) = [attrs for name, attrs, _ in collector.spans if name == "GET /api/orgs/{org_id}"]
    assert org_span["http.route"] == "/api/orgs/{org_id}"
    assert org_span.get("http.status_code", org_span.get("http.response.status_code")) == 401
    # The SQL of the registration, traced on this app's engine, without bound values.
    statements = [
        attrs for _, attrs, _ in collector.spans if "db.system" in attrs or "db.system.name" in attrs
    ]
    assert any(
        "INSERT INTO users" in str(attrs.get("db.statement", attrs.get("db.query.text")))
        for attrs in statements
    )
    assert all("tracy@example.com" not in repr(attrs) for _, attrs, _ in collector.spans)
    assert {service for _, _, service in collector.spans} == {"agentkeep-test"}
    # Liveness probes are not traced.
    assert not any("/health/live" in name for name in names)


async def test_without_an_endpoint_nothing_is_traced(settings: Settings) -> None:
    app = create_app(settings)
    assert app.state.tracing is None


def test_the_endpoint_must_be_an_http_url_without_credentials() -> None:
    secret = secrets.token_urlsafe(40)
    for bad in ("collector:4318", "ftp://collector:4318", "https://user:pw@collector:4318"):
        with pytest.raises(ConfigError) as caught:
            load_settings(_env_file=None, jwt_secret=secret, otel_exporter_otlp_endpoint=bad)
        assert caught.value.problems[0].startswith("OTEL_EXPORTER_OTLP_ENDPOINT:")
        assert "pw" not in caught.value.problems[0]


def test_without_the_extra_installed_start_is_refused_naming_the_extra(tmp_path: Path) -> None:
    # A fresh interpreter in which the tracing packages cannot be imported.
    hide = "; ".join(f"sys.modules[{name!r}] = None" for name in TRACING_MODULES)
    program = f"import sys; {hide}; sys.argv = ['agentkeep', 'serve', '--port', '0']; " + (
        "from agentkeep.cli import main; main()"
    )
    env = {"JWT_SECRET": secrets.token_urlsafe(40), "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    result = run_logged([sys.executable, "-c", program], name="agentkeep-serve", cwd=tmp_path, env=env)
    assert result.returncode == 78, result.stderr
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in result.stderr
    assert "agentkeep[otel]" in result.stderr
    assert "Traceback" not in result.stderr
