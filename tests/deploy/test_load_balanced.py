"""The load-balanced deployment of docs/OPERATIONS.md, run for real: nginx from Debian's
package with the repository's deploy/nginx.conf, TLS with a throwaway certificate, two
`agentkeep serve` instances and a worker on PostgreSQL + Redis in the production profile.

One test runs every check on one deployment, in turn: starting the deployment is the slow
part, and the parallel runner would start one for each worker that took a separate test. The
rolling restart comes last, since it replaces the instances.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.auth.helpers import PASSWORD, bearer
from tests.deploy.load_balanced import ADMIN, ADMIN_PASSWORD, DRAIN_SECONDS, LoadBalanced, load_balanced
from tests.deploy.runbook import run_runbook, runbook_blocks
from tests.deploy.traffic import ApiLoad, HeldPage, sse_events
from tests.support.access_log import served_requests
from tests.support.databases import (
    create_postgres_database,
    drop_postgres_database,
    postgres_answers,
    unavailable,
)
from tests.support.nginx import PUBLIC_HOST, runbook_environment

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis, pytest.mark.timeout(420)]

SPOOFED = "203.0.113.7"  # TEST-NET-3: no real client has it
# Revocation is announced to every instance and takes effect there within one second
# (docs/SECURITY.md); a wide margin for a loaded host.
REVOCATION_BOUND_SECONDS = 15.0
# nginx skips an upstream that refused a connection for fail_timeout (10 s, its default): the
# next instance may be stopped only once the restarted one is back (docs/OPERATIONS.md).
FAIL_TIMEOUT_SECONDS = 10.0
# What the load requests (running_server's own start-up probe goes to /health/live).
LOAD_ROUTES = {"/api/agents"}


@pytest.fixture
async def deployment(
    tmp_path_factory: pytest.TempPathFactory, redis_available: bool
) -> AsyncIterator[LoadBalanced]:
    if not await postgres_answers():
        unavailable("PostgreSQL")
    if not redis_available:
        unavailable("Redis")
    url = await create_postgres_database("agentkeep_lb")
    try:
        with load_balanced(url, tmp_path_factory.mktemp("load-balanced")) as deployed:
            yield deployed
    finally:
        await drop_postgres_database(url)


async def _user(http: httpx.AsyncClient, username: str) -> dict[str, Any]:
    registered = await http.post(
        "/auth/register",
        json={"username": username, "email": f"{username}@example.com", "password": PASSWORD},
    )
    assert registered.status_code == 201, registered.text
    login = await http.post("/auth/login", data={"username": username, "password": PASSWORD})
    assert login.status_code == 200, login.text
    tokens: dict[str, Any] = login.json()
    return tokens


def _served_by(deployment: LoadBalanced, responses: list[httpx.Response]) -> list[int]:
    """Which instance answered each response, found by its request id in the instances' logs."""
    slots = []
    for response in responses:
        request_id = response.headers["x-request-id"]
        # The instance logs a request just after answering it.
        deadline = time.monotonic() + 10
        while not (
            found := [n for n, s in deployment.servers.items() if request_id in served_requests(s.log())]
        ):
            assert time.monotonic() < deadline, f"no instance logged request {request_id}"
            time.sleep(0.05)
        slots.extend(found)
    return slots


async def _check_tls_and_the_redirect_to_https(deployment: LoadBalanced) -> None:
    async with deployment.plain_client("127.0.0.2") as plain:
        redirected = await plain.get("/api/agents?limit=5")
    assert redirected.status_code == 301
    assert redirected.headers["location"] == f"https://{PUBLIC_HOST}/api/agents?limit=5"

    async with deployment.client("127.0.0.2") as http:
        ready = await http.get("/health/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "ok"
    # The production profile's header, from the API through nginx.
    assert "max-age=" in ready.headers["strict-transport-security"]
    assert ready.extensions["network_stream"].get_extra_info("ssl_object").version() in {"TLSv1.2", "TLSv1.3"}

    # A client that does not trust the throwaway certificate refuses the connection.
    async with httpx.AsyncClient(base_url=f"https://127.0.0.1:{deployment.proxy.https_port}") as untrusting:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await untrusting.get("/health/live", headers={"Host": PUBLIC_HOST})
    # /metrics is never published through the proxy.
    async with deployment.client("127.0.0.2") as http:
        assert (await http.get("/metrics")).status_code == 404


async def _check_the_runbook_checks_and_applies_the_configuration(
    deployment: LoadBalanced, tmp_path: Path
) -> None:
    (commands, _) = runbook_blocks()
    env = runbook_environment(deployment.proxy, deployment.certificate, tmp_path)
    workers_before = _nginx_workers(deployment)
    output = await run_runbook("\n".join(commands), env)
    assert "301 https://agents.example.com/health/ready" in output
    assert '"status":"ok"' in output.replace(" ", "")
    # The reload started new nginx worker processes, and nginx kept serving.
    deadline = time.monotonic() + 30
    while not (_nginx_workers(deployment) - workers_before):
        assert time.monotonic() < deadline, "nginx -s reload started no new worker process"
        await asyncio.sleep(0.1)
    async with deployment.client("127.0.0.2") as http:
        assert (await http.get("/health/ready")).status_code == 200


def _nginx_workers(deployment: LoadBalanced) -> set[int]:
    pid = deployment.proxy.process.pid
    return {int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


async def _login_records(admin: httpx.AsyncClient, user_id: str) -> list[dict[str, Any]]:
    page = await admin.get("/api/audit-logs", params={"action": "login_success", "user_id": user_id})
    assert page.status_code == 200, page.text
    items: list[dict[str, Any]] = page.json()["items"]
    return items


async def _check_client_address_from_x_forwarded_for_only_through_nginx(deployment: LoadBalanced) -> None:
    spoof = {"X-Forwarded-For": SPOOFED}
    async with deployment.client("127.0.0.2") as http:
        tokens = await _user(http, "xff")
        me = (await http.get("/auth/me", headers=bearer(tokens["access_token"]))).json()
        # Through nginx with a forged header: nginx appends the address it saw, and only that is believed.
        login = await http.post("/auth/login", data={"username": "xff", "password": PASSWORD}, headers=spoof)
        assert login.status_code == 200, login.text
    # Straight to an instance with the same forged header: the instance does not trust this peer.
    for slot in (0, 1):
        async with deployment.direct(slot, "127.0.0.3") as direct:
            login = await direct.post(
                "/auth/login", data={"username": "xff", "password": PASSWORD}, headers=spoof
            )
            assert login.status_code == 200, login.text

    async with deployment.client("127.0.0.9") as admin:
        login = await admin.post("/auth/login", data={"username": ADMIN, "password": ADMIN_PASSWORD})
        assert login.status_code == 200, login.text
        admin.headers.update(bearer(login.json()["access_token"]))
        records = await _login_records(admin, me["id"])
        forged = await admin.get("/api/audit-logs", params={"ip_address": SPOOFED})
    addresses = sorted(record["ip_address"] for record in records)
    assert addresses == ["127.0.0.2", "127.0.0.2", "127.0.0.3", "127.0.0.3"]
    assert forged.json()["items"] == []


async def _check_the_auth_rate_limit_is_shared_by_both_instances(deployment: LoadBalanced) -> None:
    wrong = {"username": "nobody-at-all", "password": "not the password 1"}
    async with deployment.client("127.0.0.4") as http:
        # RATE_LIMIT_AUTH=5/minute per client address (docs/SECURITY.md: 5 x 401, then 429).
        answers = [await http.post("/auth/login", data=wrong) for _ in range(8)]
    assert [a.status_code for a in answers] == [401] * 5 + [429] * 3
    # nginx spread the attempts over both instances: one limit held across them.
    assert set(_served_by(deployment, answers)) == {0, 1}
    # The limited client cannot escape by naming another address, through nginx or not.
    async with deployment.client("127.0.0.4") as http:
        forged = await http.post("/auth/login", data=wrong, headers={"X-Forwarded-For": SPOOFED})
    assert forged.status_code == 429
    for slot in (0, 1):
        async with deployment.direct(slot, "127.0.0.4") as direct:
            forged = await direct.post("/auth/login", data=wrong, headers={"X-Forwarded-For": SPOOFED})
        assert forged.status_code == 429
    # Another client through the same nginx has its own allowance.
    async with deployment.client("127.0.0.5") as http:
        assert (await http.post("/auth/login", data=wrong)).status_code == 401


async def _until_refused_everywhere(deployment: LoadBalanced, headers: dict[str, str], path: str) -> None:
    deadline = time.monotonic() + REVOCATION_BOUND_SECONDS
    for slot in (0, 1):
        async with deployment.direct(slot, "127.0.0.6") as direct:
            while (status := (await direct.get(path, headers=headers)).status_code) != 401:
                assert status == 200, status
                assert time.monotonic() < deadline, f"instance {slot} still accepts a revoked credential"
                await asyncio.sleep(0.1)


async def _accepted_everywhere(deployment: LoadBalanced, headers: dict[str, str], path: str) -> None:
    for slot in (0, 1):
        async with deployment.direct(slot, "127.0.0.6") as direct:
            me = await direct.get(path, headers=headers)
            assert me.status_code == 200, (slot, me.text)


async def _check_logout_and_key_revocation_take_effect_on_both_instances(deployment: LoadBalanced) -> None:
    async with deployment.client("127.0.0.6") as http:
        tokens = await _user(http, "revoked")
        session = bearer(tokens["access_token"])
        created = await http.post(
            "/api/api-keys", json={"name": "ci", "scopes": ["agents:read"]}, headers=session
        )
        assert created.status_code == 201, created.text
        key = bearer(created.json()["key"])
        await _accepted_everywhere(deployment, session, "/auth/me")
        await _accepted_everywhere(deployment, key, "/api/agents")

        revoked = await http.delete(f"/api/api-keys/{created.json()['id']}", headers=session)
        assert revoked.status_code == 204, revoked.text
        await _until_refused_everywhere(deployment, key, "/api/agents")
        await _accepted_everywhere(deployment, session, "/auth/me")

        logout = await http.post("/auth/logout", headers=session)
        assert logout.status_code == 204, logout.text
        await _until_refused_everywhere(deployment, session, "/auth/me")


@pytest.fixture
def held_page() -> Iterator[HeldPage]:
    page = HeldPage()
    thread = threading.Thread(target=page.server.serve_forever, daemon=True)
    thread.start()
    yield page
    page.release.set()
    page.server.shutdown()
    page.server.server_close()


async def _check_event_streams_through_nginx_are_unbuffered_and_resumable(
    deployment: LoadBalanced, held_page: HeldPage
) -> None:
    tool = {"name": "http_get", "settings": {"allowed_hosts": ["127.0.0.1"], "timeout_seconds": 30}}
    async with deployment.client("127.0.0.7") as http:
        auth = bearer((await _user(http, "streamer"))["access_token"])
        agent = await http.post(
            "/api/agents", json={"name": "fetcher", "model": "test", "tools": [tool]}, headers=auth
        )
        assert agent.status_code == 201, agent.text
        url = f"http://127.0.0.1:{held_page.port}/report"
        run = await http.post(
            f"/api/agents/{agent.json()['id']}/runs", json={"input": f"Please fetch {url} now"}, headers=auth
        )
        assert run.status_code == 202, run.text
        events_path = f"/api/runs/{run.json()['id']}/events"

        lines: list[str] = []
        async with http.stream("GET", events_path, headers=auth) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            async for line in stream.aiter_lines():
                lines.append(line)
                if any(event.get("event") == "tool_call" for event in sse_events(lines)):
                    break
        # The worker's tool call is still waiting on the held page: the events arrived while
        # the run was in progress, not when nginx had a full buffer or the stream ended.
        assert await asyncio.to_thread(held_page.requested.wait, 30)
        assert not held_page.answered.is_set()
        seen = sse_events(lines)
        last_id = seen[-1]["id"]
        held_page.release.set()

        async with http.stream("GET", events_path, headers={**auth, "Last-Event-ID": last_id}) as stream:
            rest = sse_events([line async for line in stream.aiter_lines()] + [""])
    ids = [int(event["id"]) for event in seen + rest]
    assert ids == list(range(1, len(ids) + 1))
    assert json.loads(rest[-1]["data"])["status"] == "completed"


async def _back_in_rotation(deployment: LoadBalanced, slot: int) -> None:
    """Wait until nginx sends the restarted instance requests again: it skips an instance that
    refused a connection for fail_timeout (10 s), then tries it with the next request; the
    upstream's shared zone makes that one answer count for every nginx worker process."""
    deadline = time.monotonic() + FAIL_TIMEOUT_SECONDS + 60
    while not any(
        served.route in LOAD_ROUTES for served in served_requests(deployment.servers[slot].log()).values()
    ):
        assert time.monotonic() < deadline, f"instance {slot} got no request from nginx again"
        await asyncio.sleep(0.2)


REFUSED = "(111: Connection refused) while connecting to upstream"


def _refused_by(deployment: LoadBalanced, slot: int) -> int:
    """nginx's error-log lines for connections the instance in `slot` refused."""
    upstream = f'upstream: "http://127.0.0.1:{deployment.ports[slot]}/'
    return sum(REFUSED in line and upstream in line for line in deployment.proxy.log().splitlines())


async def _met_while_down(deployment: LoadBalanced, slot: int, refused_before: int) -> None:
    """Wait, with the instance stopped and the load running, until nginx has tried it and been
    refused: round robin sends it one of the next requests unless the drain's closed listener
    already refused one. Only then is it started again, so every rolling step checks that a
    refused connection is moved to the other instance, whatever the host's timing."""
    deadline = time.monotonic() + FAIL_TIMEOUT_SECONDS + 60
    while _refused_by(deployment, slot) <= refused_before:
        assert time.monotonic() < deadline, f"nginx sent stopped instance {slot} no request"
        await asyncio.sleep(0.05)


async def _check_a_rolling_restart_under_load_fails_no_request(
    deployment: LoadBalanced, tmp_path: Path
) -> None:
    async with deployment.client("127.0.0.8") as http:
        auth = bearer((await _user(http, "loader"))["access_token"])
        load = ApiLoad(http=http, headers=auth)

        # The runbook's commands: stop an instance, then wait for its successor's readiness.
        (_, (stop, wait_ready)) = runbook_blocks()
        env = runbook_environment(deployment.proxy, deployment.certificate, tmp_path)

        started: dict[str, float] = {"before": time.monotonic()}

        def enter(phase: str) -> None:
            load.phase = phase
            started[phase] = time.monotonic()

        async def roll() -> None:
            await asyncio.sleep(1)
            for slot in (0, 1):
                enter(f"restarting-{slot}")
                old = deployment.servers[slot].process
                refused_before = _refused_by(deployment, slot)
                await run_runbook(stop, {**env, "INSTANCE_PID": str(old.pid)})
                code = await asyncio.to_thread(old.wait, DRAIN_SECONDS + 60)
                assert code == 0
                await _met_while_down(deployment, slot, refused_before)
                await asyncio.to_thread(deployment.start_instance, slot)
                await run_runbook(wait_ready, {**env, "INSTANCE": f"127.0.0.1:{deployment.ports[slot]}"})
                enter(f"restarted-{slot}")
                await _back_in_rotation(deployment, slot)
            enter("after")
            await asyncio.sleep(1)

        await load.run(6, roll)
        started["end"] = time.monotonic()
    summary = load.summary()
    marks = list(started.items())
    seconds = {phase: round(marks[n + 1][1] - at, 1) for n, (phase, at) in enumerate(marks[:-1])}
    print(summary, seconds)  # the figures, with -s
    failed = [answer for answer in load.answers if answer[2] not in {200, 201}]
    assert not failed, (failed[:5], summary)
    # A create sent twice with its Idempotency-Key made one agent.
    async with deployment.client("127.0.0.8") as http:
        for kind, name in load.retried:
            if kind == "create":
                found = await http.get("/api/agents", params={"name": name}, headers=auth)
                assert [agent["name"] for agent in found.json()["items"]] == [name], found.text
    print("retried", load.retried)
    assert set(summary) == {"before", "restarting-0", "restarted-0", "restarting-1", "restarted-1", "after"}
    # nginx did meet each stopped instance and moved those requests to the other one.
    assert all(_refused_by(deployment, slot) >= 1 for slot in (0, 1)), deployment.proxy.log()[-3000:]


async def test_a_load_balanced_deployment_behind_the_repositorys_nginx_conf(
    deployment: LoadBalanced, held_page: HeldPage, tmp_path: Path
) -> None:
    """Each check names its failure; the rolling restart, which replaces the instances, last."""
    await _check_tls_and_the_redirect_to_https(deployment)
    await _check_the_runbook_checks_and_applies_the_configuration(deployment, tmp_path)
    await _check_client_address_from_x_forwarded_for_only_through_nginx(deployment)
    await _check_the_auth_rate_limit_is_shared_by_both_instances(deployment)
    await _check_logout_and_key_revocation_take_effect_on_both_instances(deployment)
    await _check_event_streams_through_nginx_are_unbuffered_and_resumable(deployment, held_page)
    await _check_a_rolling_restart_under_load_fails_no_request(deployment, tmp_path)
