"""The keyed forms are the documented HMAC-SHA256 derivations, and the sealer acts on them."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import uuid
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from agentkeep.audit.keys import AuditKey
from agentkeep.audit.models import AuditLog
from agentkeep.audit.sealing import AuditSealer
from agentkeep.config import Settings
from agentkeep.observability.metrics import Metrics
from tests.audit.conftest import add_events

MATERIAL = bytes(range(32))
KEY_TEXT = MATERIAL.hex()
RECORD = {
    "id": uuid.UUID("12345678-1234-4678-9234-567812345678"),
    "chain": "global",
    "sequence": 7,
    "timestamp": datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
    "user_id": None,
    "org_id": None,
    "actor_type": "system",
    "action": "audit_pruned",
    "resource_type": None,
    "resource_id": None,
    "status": "success",
    "details": {},
    "ip_address": None,
    "user_agent": None,
    "request_id": None,
    "prev_hash": "0" * 64,
    "key_id": "k",
    "mac": "m",
}
# Written by hand from docs/audit.md ("Keyed records"), not produced by the code under test.
INSERT_FORM = (
    '{"action":"audit_pruned","actor_type":"system","chain":"global","details":{},"id":'
    '"12345678-1234-4678-9234-567812345678","ip_address":null,"key_id":"k","org_id":null,'
    '"request_id":null,"resource_id":null,"resource_type":null,"status":"success",'
    '"timestamp":"2026-01-02T03:04:05.000006Z","user_agent":null,"user_id":null,"v":2}'
)


def _sub_key(label: str) -> bytes:
    return hmac.new(MATERIAL, label.encode(), hashlib.sha256).digest()


def test_key_id_insert_mac_and_link_follow_the_documented_derivation() -> None:
    key = AuditKey(KEY_TEXT)
    assert key.key_id == _sub_key("agentkeep-audit-key-id").hex()[:16]
    expected_mac = hmac.new(_sub_key("agentkeep-audit-insert-mac"), INSERT_FORM.encode(), hashlib.sha256)
    assert key.insert_mac(RECORD) == expected_mac.hexdigest()
    sealed = {**json.loads(INSERT_FORM), "sequence": 7, "prev_hash": "0" * 64, "mac": "m"}
    sealed_text = json.dumps(sealed, sort_keys=True, separators=(",", ":"))
    expected_link = hmac.new(_sub_key("agentkeep-audit-chain"), sealed_text.encode(), hashlib.sha256)
    assert key.chain_hash(RECORD) == expected_link.hexdigest()
    # The same key written in base64 is the same key.
    assert AuditKey(base64.b64encode(MATERIAL).decode()).key_id == key.key_id


def test_record_ids_carry_a_tag_only_the_key_can_make() -> None:
    key, other = AuditKey(KEY_TEXT), AuditKey(secrets.token_hex(32))
    issued = key.new_record_id()
    assert (issued.version, issued.variant) == (4, uuid.RFC_4122)
    tag = hmac.new(_sub_key("agentkeep-audit-record-id"), issued.bytes[:8], hashlib.sha256).digest()[:8]
    assert issued.bytes[9:] == tag[1:]
    assert issued.bytes[8] & 0x3F == tag[0] & 0x3F
    assert key.issued(issued)
    assert not other.issued(issued)
    assert not key.issued(uuid.uuid4())


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"audit_hmac_key": SecretStr(secrets.token_urlsafe(48))})


async def test_the_sealer_refuses_a_forged_record_once_and_seals_the_genuine_ones_behind_it(
    sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    (first,) = await add_events(sessionmaker, 1)
    async with sessionmaker() as session:
        template = (await session.execute(select(AuditLog.__table__))).mappings().one()
    forged = {
        **template,
        "id": uuid.uuid4(),
        "sequence": None,
        "prev_hash": None,
        "hash": None,
        "mac": "0" * 64,
    }
    async with engine.begin() as connection:
        await connection.execute(insert(AuditLog).values(forged))
    await add_events(sessionmaker, 3, seal=False)
    metrics = Metrics()
    counter = metrics.audit_tamper_detected
    sealer = AuditSealer(sessionmaker, interval=0.01, on_tamper=lambda reason: counter.labels(reason).inc())
    sealer.start()
    while sealer.passes < 5:  # noqa: ASYNC110 (several passes over the same forged record)
        await asyncio.sleep(0.01)
    await sealer.stop()
    sample = metrics.registry.get_sample_value(
        "agentkeep_audit_tamper_detected_total", {"reason": "mac_mismatch"}
    )
    assert sample == 1
    async with sessionmaker() as session:
        rows = (await session.scalars(select(AuditLog).order_by(AuditLog.sequence))).all()
    by_id = {row.id: row for row in rows}
    assert (by_id[forged["id"]].sequence, by_id[forged["id"]].seal_refused) == (None, "mac_mismatch")
    sealed = [row for row in rows if row.sequence is not None]
    assert [row.action for row in sealed] == ["agent_created"] * 4 + ["audit_tamper_detected"]
    assert sealed[0].id == first.id
    assert sealed[-1].resource_id == str(forged["id"])
    assert sealed[-1].details["reason"] == "mac_mismatch"
