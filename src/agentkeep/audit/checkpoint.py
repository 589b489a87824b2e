"""Signed checkpoints: a chain's head (sequence, hash) under an HMAC-SHA256 signature.

A checkpoint kept outside the database lets `verify` detect what the chain alone cannot:
the newest records truncated, or the whole chain rewritten with recomputed hashes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from agentkeep.audit.canonical import format_timestamp

CHECKPOINT_VERSION = 1


class CheckpointError(ValueError):
    """The checkpoint is malformed, unsigned when a key is set, or its signature is wrong."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    chain: str
    sequence: int
    hash: str
    created_at: str
    signature: str | None = None
    version: int = CHECKPOINT_VERSION

    def signed_content(self) -> bytes:
        content = {
            "chain": self.chain,
            "sequence": self.sequence,
            "hash": self.hash,
            "created_at": self.created_at,
            "version": self.version,
        }
        return json.dumps(content, sort_keys=True, separators=(",", ":")).encode()

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, indent=2)


def _sign(content: bytes, key: bytes) -> str:
    return hmac.new(key, content, hashlib.sha256).hexdigest()


def make_checkpoint(
    chain: str, sequence: int, head_hash: str, now: datetime, key: bytes | None
) -> Checkpoint:
    unsigned = Checkpoint(chain=chain, sequence=sequence, hash=head_hash, created_at=format_timestamp(now))
    if key is None:
        return unsigned
    return Checkpoint(
        chain=chain,
        sequence=sequence,
        hash=head_hash,
        created_at=unsigned.created_at,
        signature=_sign(unsigned.signed_content(), key),
    )


def load_checkpoint(text: str, key: bytes | None, previous: Sequence[bytes] = ()) -> Checkpoint:
    """Parse and authenticate a checkpoint. Without a key, an unsigned checkpoint is accepted.

    `previous` are retired keys (AUDIT_HMAC_PREVIOUS_KEYS): a checkpoint they signed still loads.
    """
    try:
        raw: Any = json.loads(text)
        checkpoint = Checkpoint(
            chain=str(raw["chain"]),
            sequence=int(raw["sequence"]),
            hash=str(raw["hash"]),
            created_at=str(raw["created_at"]),
            signature=None if raw.get("signature") is None else str(raw["signature"]),
            version=int(raw.get("version", CHECKPOINT_VERSION)),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError("the checkpoint file is not a valid checkpoint") from exc
    if checkpoint.version != CHECKPOINT_VERSION:
        raise CheckpointError(f"unsupported checkpoint version {checkpoint.version}")
    if key is None:
        return checkpoint
    if checkpoint.signature is None:
        raise CheckpointError("the checkpoint is unsigned but AUDIT_HMAC_KEY is set")
    signature, content = checkpoint.signature, checkpoint.signed_content()
    if not any(hmac.compare_digest(signature, _sign(content, candidate)) for candidate in (key, *previous)):
        raise CheckpointError("the checkpoint signature does not match (wrong key or edited file)")
    return checkpoint
