"""The audit key: each record's insert MAC, the keyed chain links, and the ids the application issues.

AUDIT_HMAC_KEY holds at least 32 bytes of key material, written as hex (a value made only
of hex digits is read as hex) or else as base64 (standard or URL-safe alphabet, padding
optional; `agentkeep gen-secret` prints 48 random bytes this way). HMAC-SHA256 of the
material over a fixed label derives one sub-key per purpose, so no MAC can stand in for
another:

- key id: the first 16 hex digits of HMAC(material, "agentkeep-audit-key-id"), stored with
  each record so verification picks the right key after a rotation;
- record id: 8 random bytes, then HMAC(id key, those bytes) truncated to 8 bytes (UUID
  version and variant bits set), so verify can tell a record the application wrote from one
  an attacker inserted;
- insert MAC: HMAC(insert key, the record's canonical insert form), computed when the
  record is written, before it has a place in the chain;
- chain link: HMAC(chain key, the record's canonical sealed form), instead of SHA-256.

Checkpoints keep their own signature (checkpoint.py) over the key's text as written.
The keyring rides on the engine's execution options, so every session of every process
(API, worker, CLI) that was built from the settings signs and checks with the same keys.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import uuid
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from agentkeep.audit.canonical import HashableRecord, insert_bytes, sealed_bytes

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

    from agentkeep.config import Settings

MIN_KEY_BYTES = 32
# Random key material of 32+ bytes has about 30 distinct byte values; fewer than this is a
# pattern (zeros, a repeated phrase), not a key.
MIN_DISTINCT_BYTES = 16
KEY_ID_LENGTH = 16
AUDIT_KEYS_OPTION = "agentkeep_audit_keys"

_HEX = re.compile(r"^[0-9a-fA-F]+$")
_BASE64 = re.compile(r"^[A-Za-z0-9+/_-]+={0,2}$")


def decode_key_material(text: str) -> bytes:
    """The key bytes written in `text` (hex, else base64); ValueError says what is wrong."""
    value = text.strip()
    if _HEX.match(value) and len(value) % 2 == 0:
        material = bytes.fromhex(value)
    elif _BASE64.match(value):
        standard = value.rstrip("=").replace("-", "+").replace("_", "/")
        try:
            material = base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
        except binascii.Error:
            raise ValueError("is not valid base64 or hex key material") from None
    else:
        raise ValueError("must be base64 or hex key material; generate one with `agentkeep gen-secret`")
    if len(material) < MIN_KEY_BYTES:
        raise ValueError(
            f"holds {len(material)} bytes of key material; at least {MIN_KEY_BYTES} are required "
            "(generate one with `agentkeep gen-secret`)"
        )
    if len(set(material)) < MIN_DISTINCT_BYTES:
        raise ValueError("is not random key material; generate one with `agentkeep gen-secret`")
    return material


def _derive(material: bytes, label: str) -> bytes:
    return hmac.new(material, label.encode(), hashlib.sha256).digest()


class AuditKey:
    """One AUDIT_HMAC_KEY's derived keys; hmac objects are prepared once and copied per use."""

    def __init__(self, text: str) -> None:
        material = decode_key_material(text)
        self.key_id = _derive(material, "agentkeep-audit-key-id").hex()[:KEY_ID_LENGTH]
        self.checkpoint_key = text.encode()
        self._insert = hmac.new(_derive(material, "agentkeep-audit-insert-mac"), digestmod=hashlib.sha256)
        self._chain = hmac.new(_derive(material, "agentkeep-audit-chain"), digestmod=hashlib.sha256)
        self._ids = hmac.new(_derive(material, "agentkeep-audit-record-id"), digestmod=hashlib.sha256)

    @staticmethod
    def _mac(prepared: hmac.HMAC, data: bytes) -> bytes:
        mac = prepared.copy()
        mac.update(data)
        return mac.digest()

    def insert_mac(self, record: HashableRecord | Mapping[str, Any]) -> str:
        return self._mac(self._insert, insert_bytes(record)).hex()

    def chain_hash(self, record: HashableRecord | Mapping[str, Any]) -> str:
        return self._mac(self._chain, sealed_bytes(record)).hex()

    def _id_tail(self, head: bytes) -> bytes:
        tail = bytearray(self._mac(self._ids, head)[:8])
        tail[0] = (tail[0] & 0x3F) | 0x80  # the RFC 9562 variant bits
        return bytes(tail)

    def new_record_id(self) -> uuid.UUID:
        head = bytearray(secrets.token_bytes(8))
        head[6] = (head[6] & 0x0F) | 0x40  # version 4: random to anyone without the key
        return uuid.UUID(bytes=bytes(head) + self._id_tail(bytes(head)))

    def issued(self, record_id: uuid.UUID) -> bool:
        """Whether `record_id` was made by new_record_id under this key."""
        raw = record_id.bytes
        return hmac.compare_digest(raw[8:], self._id_tail(raw[:8]))


class AuditKeyring:
    """The current key (signs new records) and the previous ones (still verify old records)."""

    def __init__(self, current: AuditKey, previous: Iterable[AuditKey] = ()) -> None:
        self.current = current
        self.keys = {key.key_id: key for key in (*previous, current)}

    @classmethod
    def from_texts(cls, current: str, previous: Iterable[str] = ()) -> AuditKeyring:
        return cls(AuditKey(current), [AuditKey(text) for text in previous])

    @classmethod
    def from_settings(cls, settings: Settings) -> AuditKeyring | None:
        if settings.audit_hmac_key is None:
            return None
        previous = [key.get_secret_value() for key in settings.audit_hmac_previous_keys]
        return cls.from_texts(settings.audit_hmac_key.get_secret_value(), previous)

    def get(self, key_id: str | None) -> AuditKey | None:
        return None if key_id is None else self.keys.get(key_id)

    def issuer_of(self, record_id: uuid.UUID) -> AuditKey | None:
        """The key that issued `record_id`, if any configured key did."""
        return next((key for key in self.keys.values() if key.issued(record_id)), None)

    @property
    def checkpoint_keys(self) -> list[bytes]:
        """Keys that sign (the first) or may have signed a checkpoint."""
        others = [key.checkpoint_key for key in self.keys.values() if key is not self.current]
        return [self.current.checkpoint_key, *others]


def attach_keyring(engine: AsyncEngine, settings: Settings) -> None:
    """Make the audit keys of `settings` available to every session on `engine`."""
    keyring = AuditKeyring.from_settings(settings)
    if keyring is not None:
        engine.update_execution_options(**{AUDIT_KEYS_OPTION: keyring})


def keyring_of(session: AsyncSession) -> AuditKeyring | None:
    """The audit keys of the engine behind `session`, or None when no key is configured."""
    keyring = session.get_bind().get_execution_options().get(AUDIT_KEYS_OPTION)
    return keyring if isinstance(keyring, AuditKeyring) else None
