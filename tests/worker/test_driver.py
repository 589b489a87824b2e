"""The run driver on SQLite and PostgreSQL: claims, leases, cancellation, fencing, attempts."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from ipaddress import ip_network

import pytest
from sqlalchemy import select

from agentkeep.audit.models import AuditLog
from agentkeep.config import Settings
from agentkeep.observability.metrics import Metrics
from agentkeep.providers.models import Provider
from agentkeep.runs.contract import RunOutcome, Usage
from agentkeep.runs.states import EventKind, RunStatus, StopReason
from agentkeep.security.secretbox import SecretBox, generate_key
from agentkeep.tools.netguard import EgressAllowlist
from agentkeep.worker import leases
from agentkeep.worker.driver import RunDriver
from agentkeep.worker.leases import LeaseLost
from agentkeep.worker.sink import FencedEventSink
from tests.worker.helpers import (
    ScriptedExecutor,
    Sessionmaker,
    assert_gap_free,
    events,
    load_run,
    make_run,
    set_run,
    statuses,
)

DriverFactory = Callable[..., RunDriver]


async def _claim_as(
    sessionmaker: Sessionmaker, run_id: uuid.UUID, owner: str, lease: float
) -> leases.Claim | None:
    """What a worker does before it dies: take the lease (and never renew it)."""
    async with sessionmaker() as session, session.begin():
        return await leases.claim(
            session, run_id, owner, now=datetime.now(UTC), lease_seconds=lease, max_attempts=3
        )


async def test_a_run_completes_with_its_outcome_events_audit_and_metrics(
    sessionmaker: Sessionmaker, make_driver: DriverFactory
) -> None:
    run_id = await make_run(sessionmaker, "summarise")
    metrics = Metrics()
    status = await make_driver("w1", ScriptedExecutor(), metrics).drive(run_id)

    assert status == RunStatus.COMPLETED
    run = await load_run(sessionmaker, run_id)
    assert (run.status, run.stop_reason, run.output) == ("completed", "end_turn", "done: summarise")
    assert (run.attempts, run.requests, run.input_tokens, run.output_tokens) == (1, 1, 11, 7)
    assert run.lease_owner is None
    assert run.lease_expires_at is None
    assert run.started_at is not None
    assert run.finished_at is not None
    rows = await events(sessionmaker, run_id)
    assert_gap_free(rows)
    assert [event.kind for event in rows] == ["status", "model_request", "model_response", "output", "status"]
    assert rows[0].data == {"status": "running", "attempt": 1}
    assert rows[-1].data == {"status": "completed", "stop_reason": "end_turn"}
    async with sessionmaker() as session:
        audit = (await session.scalars(select(AuditLog).where(AuditLog.resource_id == str(run_id)))).one()
    assert (audit.action, audit.actor_type, audit.org_id, audit.status) == (
        "run_completed",
        "system",
        run.org_id,
        "success",
    )
    assert audit.details["usage"] == {"requests": 1, "input_tokens": 11, "output_tokens": 7}
    assert metrics.runs_finished.labels("completed", "end_turn")._value.get() == 1
    assert metrics.run_tokens.labels("input")._value.get() == 11
    assert metrics.run_tokens.labels("output")._value.get() == 7


async def test_two_runners_claiming_one_run_execute_it_once(
    sessionmaker: Sessionmaker, make_driver: DriverFactory
) -> None:
    run_id = await make_run(sessionmaker)
    first, second = ScriptedExecutor(seconds=0.3), ScriptedExecutor(seconds=0.3)
    # The product's default lease, not the 2 s these tests use for takeovers: on a host
    # loaded enough to stall this process for 2 s, the second runner would take over an
    # expired lease, as it must (a dead worker's run), and run the executor again. What is
    # checked here is that two claims at once cannot both win.
    lease = Settings.model_fields["run_lease_seconds"].default
    results = await asyncio.gather(
        make_driver("w1", first, run_lease_seconds=lease).drive(run_id),
        make_driver("w2", second, run_lease_seconds=lease).drive(run_id),
    )

    assert sorted(results, key=str) == sorted([RunStatus.COMPLETED, None], key=str)
    assert first.calls + second.calls == 1
    run = await load_run(sessionmaker, run_id)
    assert (run.status, run.attempts) == ("completed", 1)
    assert await statuses(sessionmaker, run_id) == ["running", "completed"]


async def test_a_finished_run_is_never_claimed_again(
    sessionmaker: Sessionmaker, make_driver: DriverFactory
) -> None:
    run_id = await make_run(sessionmaker)
    assert await make_driver("w1", ScriptedExecutor()).drive(run_id) == RunStatus.COMPLETED
    again = ScriptedExecutor()
    assert await make_driver("w2", again).drive(run_id) is None
    assert again.calls == 0
    assert (await load_run(sessionmaker, run_id)).attempts == 1


async def test_a_run_whose_worker_died_is_taken_over_when_its_lease_expires(
    sessionmaker: Sessionmaker, make_driver: DriverFactory
) -> None:
    run_id = await make_run(sessionmaker)
    assert await _claim_as(sessionmaker, run_id, "dead-worker", lease=0.3) is not None
    # While the lease is live, nobody else may take the run.
    assert await make_driver("w2", ScriptedExecutor()).drive(run_id) is None

    await asyncio.sleep(0.4)
    assert await make_driver("w2", ScriptedExecutor()).drive(run_id) == RunStatus.COMPLETED
    run = await load_run(sessionmaker, run_id)
    assert (run.status, run.attempts, run.lease_owner) == ("completed", 2, None)
    rows = await events(sessionmaker, run_id)
    assert_gap_free(rows)
    assert [e.data.get("attempt") for e in rows if e.kind == "status"] == [1, 2, None]


async def test_a_run_out_of_attempts_fails_with_internal_error(
    sessionmaker: Sessionmaker, make_driver: DriverFactory
) -> None:
    run_id = await make_run(sessionmaker)
    for _ in range(2):
        assert await _claim_as(sessionmaker, run_id, "dead-worker", lease=0.2) is not None
        await asyncio.sleep(0.3)
    metrics = Metrics()
    executor = ScriptedExecutor()

    assert await make_driver("w3", executor, metrics, run_max_attempts=2).drive(run_id) is None
    assert executor.calls == 0
    run = await load_run(sessionmaker, run_id)
    assert (run.status, run.stop_reason, run.attempts, run.lease_owner) == (
        "failed",
        "internal_error",
        2,
        None,
    )
    assert run.error is not None
    assert "RUN_MAX_ATTEMPTS" in run.error
    assert await statuses(sessionmaker, run_id) == ["running", "running", "failed"]
    async with sessionmaker() as session:
        audit = (await session.scalars(select(AuditLog).where(AuditLog.resource_id == str(run_id)))).one()
    assert (audit.action, audit.actor_type, audit.details["stop_reason"]) == (
        "run_failed",
        "system",
        "internal_error",
    )
    assert metrics.runs_finished.labels("failed", "internal_error")._value.get() == 1


async def test_cancelling_a_running_run_stops_it_within_two_seconds(
    sessionmaker: Sessionmaker, make_driver: DriverFactory
) -> None:
    run_id = await make_run(sessionmaker)
    executor = ScriptedExecutor(seconds=60)
    driving = asyncio.create_task(make_driver("w1", executor, run_lease_seconds=30).drive(run_id))
    await asyncio.wait_for(executor.started.wait(), 10)

    asked = time.monotonic()
    await set_run(sessionmaker, run_id, cancel_requested_at=datetime.now(UTC))
    status = await asyncio.wait_for(driving, 10)

    assert time.monotonic() - asked < 2.0
    assert status == RunStatus.CANCELLED
    run = await load_run(sessionmaker, run_id)
    assert (run.status, run.stop_reason, run.lease_owner) == ("cancelled", "cancelled", None)
    assert run.finished_at is not None
    assert (await events(sessionmaker, run_id))[-1].data == {
        "status": "cancelled",
        "stop_reason": "cancelled",
    }


async def test_the_lease_is_renewed_while_a_run_outlasts_it(
    sessionmaker: Sessionmaker, make_driver: DriverFactory
) -> None:
    run_id = await make_run(sessionmaker)
    # Three lease periods: without renewal another runner could take the run over.
    executor = ScriptedExecutor(seconds=6)
    driving = asyncio.create_task(make_driver("w1", executor, run_lease_seconds=2).drive(run_id))
    await asyncio.wait_for(executor.started.wait(), 10)
    rival = ScriptedExecutor()
    for _ in range(5):
        await asyncio.sleep(1)
        assert await make_driver("w2", rival).drive(run_id) is None
    assert await asyncio.wait_for(driving, 10) == RunStatus.COMPLETED
    assert rival.calls == 0
    run = await load_run(sessionmaker, run_id)
    assert (run.attempts, run.heartbeat_at is not None) == (1, True)


async def test_a_runner_that_lost_its_lease_can_write_nothing(
    sessionmaker: Sessionmaker, make_driver: DriverFactory
) -> None:
    run_id = await make_run(sessionmaker)
    claim = await _claim_as(sessionmaker, run_id, "paused-worker", lease=0.2)
    assert claim is not None
    await asyncio.sleep(0.3)
    new_claim = await _claim_as(sessionmaker, run_id, "new-worker", lease=30)
    assert new_claim is not None
    assert new_claim.next_seq == 3

    stale_sink = FencedEventSink(sessionmaker, claim, "paused-worker")
    failures: list[Exception] = []
    stale_sink.on_failure = failures.append
    await stale_sink.emit(EventKind.MODEL_REQUEST, {"step": 1})  # queued; the write is refused
    with pytest.raises(LeaseLost):
        await stale_sink.drain()
    assert [type(failure) for failure in failures] == [LeaseLost]
    with pytest.raises(LeaseLost):  # and every later event is refused at once
        await stale_sink.emit(EventKind.MODEL_REQUEST, {"step": 2})
    outcome = RunOutcome(RunStatus.COMPLETED, StopReason.END_TURN, output="stale", usage=Usage())
    async with sessionmaker() as session, session.begin():
        assert not await leases.finish(session, run_id, "paused-worker", outcome, now=datetime.now(UTC))
    run = await load_run(sessionmaker, run_id)
    assert (run.status, run.lease_owner, run.output) == ("running", "new-worker", None)
    assert await statuses(sessionmaker, run_id) == ["running", "running"]

    # The current holder still writes, right after the takeover's status event.
    current = FencedEventSink(sessionmaker, new_claim, "new-worker")
    await current.emit(EventKind.MODEL_REQUEST, {"step": 1})
    await current.drain()
    await current.close()
    assert_gap_free(await events(sessionmaker, run_id))


async def test_a_runner_whose_run_was_taken_over_stops_without_recording(
    sessionmaker: Sessionmaker, make_driver: DriverFactory
) -> None:
    run_id = await make_run(sessionmaker)
    executor = ScriptedExecutor(hold=True)
    driving = asyncio.create_task(make_driver("w1", executor, run_lease_seconds=30).drive(run_id))
    await asyncio.wait_for(executor.started.wait(), 10)
    # As if w1 had been paused past its lease and the sweep requeued the run for w2.
    await set_run(sessionmaker, run_id, lease_expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert await _claim_as(sessionmaker, run_id, "w2", lease=30) is not None

    assert await asyncio.wait_for(driving, 10) is None
    run = await load_run(sessionmaker, run_id)
    assert (run.status, run.lease_owner, run.attempts) == ("running", "w2", 2)
    assert await statuses(sessionmaker, run_id) == ["running", "running"]


async def test_a_run_whose_agent_version_is_unusable_fails_with_internal_error(
    sessionmaker: Sessionmaker, make_driver: DriverFactory
) -> None:
    run_id = await make_run(sessionmaker)
    await set_run(sessionmaker, run_id, agent_version=99)
    executor = ScriptedExecutor()
    assert await make_driver("w1", executor).drive(run_id) == RunStatus.FAILED
    assert executor.calls == 0
    run = await load_run(sessionmaker, run_id)
    assert (run.status, run.stop_reason, run.lease_owner) == ("failed", "internal_error", None)
    assert await statuses(sessionmaker, run_id) == ["running", "failed"]


async def _add_provider(sessionmaker: Sessionmaker, run_id: uuid.UUID, key: str, api_key: str) -> None:
    run = await load_run(sessionmaker, run_id)
    async with sessionmaker() as session, session.begin():
        session.add(
            Provider(
                org_id=run.org_id,
                name="default",
                kind="openai",
                base_url="https://llm.example.test/v1",
                api_key_ciphertext=SecretBox([key]).encrypt(api_key),
                key_hint="",
            )
        )


async def test_runs_use_their_organization_s_provider_else_the_deployment_endpoint(
    sessionmaker: Sessionmaker, make_driver: DriverFactory
) -> None:
    key = generate_key()
    deployment = {
        "openai_base_url": "https://deployment.example.test/v1",
        "secrets_encryption_keys": key,
        "provider_allowed_networks": "10.0.0.0/8",
    }
    driver = make_driver("w1", ScriptedExecutor(), **deployment)
    plain_run = await make_run(sessionmaker)
    plain_claim = await _claim_as(sessionmaker, plain_run, "w1", lease=30)
    assert plain_claim is not None
    endpoint = (await driver.build_request(plain_claim)).endpoint
    assert endpoint is not None
    assert endpoint.base_url == "https://deployment.example.test/v1"
    # The operator's own OPENAI_BASE_URL is trusted to be private (docs/providers.md).
    assert endpoint.allowlist == EgressAllowlist(
        frozenset({"deployment.example.test"}), (ip_network("10.0.0.0/8"),)
    )

    provider_run = await make_run(sessionmaker)
    await _add_provider(sessionmaker, provider_run, key, "sk-org-key-0123456789")
    provider_claim = await _claim_as(sessionmaker, provider_run, "w1", lease=30)
    assert provider_claim is not None
    endpoint = (await driver.build_request(provider_claim)).endpoint
    assert endpoint is not None
    assert endpoint.base_url == "https://llm.example.test/v1"
    # An organization's provider gets PROVIDER_ALLOWED_NETWORKS only.
    assert endpoint.allowlist == EgressAllowlist(frozenset(), (ip_network("10.0.0.0/8"),))
    assert endpoint.api_key is not None
    assert endpoint.api_key.get_secret_value() == "sk-org-key-0123456789"


async def test_a_provider_key_that_cannot_be_read_fails_the_run_without_falling_back(
    sessionmaker: Sessionmaker, make_driver: DriverFactory
) -> None:
    run_id = await make_run(sessionmaker)
    await _add_provider(sessionmaker, run_id, generate_key(), "sk-org-key-0123456789")
    executor = ScriptedExecutor()
    driver = make_driver("w1", executor, secrets_encryption_keys=generate_key())  # not the key used
    assert await driver.drive(run_id) == RunStatus.FAILED
    assert executor.calls == 0
    run = await load_run(sessionmaker, run_id)
    assert (run.status, run.stop_reason) == ("failed", "model_error")
    assert run.error == "the organization's model provider key cannot be read"
