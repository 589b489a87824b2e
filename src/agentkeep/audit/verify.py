"""Verifying a chain end to end, streaming in batches so memory stays constant.

Each sealed record must carry the next sequence number, the previous record's hash, and a
link that matches its own canonical content (HMAC under its key when keyed, SHA-256 when
not). Under AUDIT_HMAC_KEY each keyed record's insert MAC must verify and its id must have
been issued under the key; an unkeyed record may only come before the first keyed one, and
the newest must be keyed. The first record follows the chain's prune anchor; the last must
match the head row; no sealed record may lie past the head or before the anchor; and a
checkpoint's (sequence, hash) must be found.

Verification does not stop at the first problem: every record found wrong is named with
what is wrong with it (findings.py), consecutive records with one problem as one run.
Records not sealed yet are checked for their MAC under a key and counted; one older than
`max_unsealed_age` fails verification: no sealer is running, or someone stored a record
behind the sealer's back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from agentkeep.audit.actions import AuditAction
from agentkeep.audit.canonical import SEALED_FIELDS, record_hash
from agentkeep.audit.checkpoint import Checkpoint
from agentkeep.audit.findings import Finding, Findings, Problem
from agentkeep.audit.keys import AuditKeyring, keyring_of
from agentkeep.audit.models import GENESIS_HASH, GLOBAL_CHAIN, AuditChainHead, AuditLog
from agentkeep.audit.sealing import count_unsealed
from agentkeep.audit.tamper import MacProblem, mac_problem
from agentkeep.db.base import utcnow

BATCH_SIZE = 1000
# A running sealer seals within a fraction of a second; a minute leaves room for restarts.
MAX_UNSEALED_AGE = timedelta(seconds=60)
# How far a record moved by renumbering is looked for, and how many moves are explained.
MOVE_SEARCH = (1, -1, 2, -2, 3, -3)
MAX_EXPLAINED_MOVES = 5

Link = Callable[[dict[str, Any]], str]


@dataclass(frozen=True, slots=True)
class VerifyResult:
    chain: str
    ok: bool
    checked: int
    head_sequence: int
    head_hash: str
    first_bad_sequence: int | None = None
    reason: str | None = None
    pending: int = 0
    findings: tuple[str, ...] = ()
    unkeyed: int = 0

    def describe(self) -> str:
        if self.ok:
            waiting = f", {self.pending} not sealed yet" if self.pending else ""
            legacy = f", {self.unkeyed} unkeyed (SHA-256 only)" if self.unkeyed else ""
            return (
                f"chain {self.chain!r} OK: {self.checked} records, head {self.head_sequence}{waiting}{legacy}"
            )
        first = f"chain {self.chain!r} BROKEN at sequence {self.first_bad_sequence}: {self.reason}"
        return "\n".join([first, *(f"  {line}" for line in self.findings[1:])])


def _content(row: AuditLog) -> dict[str, Any]:
    return {name: getattr(row, name) for name in SEALED_FIELDS}


async def load_head(session: AsyncSession, chain: str) -> AuditChainHead | None:
    return await session.get(AuditChainHead, chain, populate_existing=True)


async def _latest_prune(session: AsyncSession, chain: str, up_to: int) -> AuditLog | None:
    statement = (
        select(AuditLog)
        .where(
            AuditLog.chain == chain,
            AuditLog.action == AuditAction.AUDIT_PRUNED.value,
            AuditLog.sequence <= up_to,
        )
        .order_by(AuditLog.sequence.desc())
        .limit(1)
    )
    return (await session.scalars(statement)).first()


def _anchor_matches(prune: AuditLog | None, sequence: int, anchor_hash: str) -> bool:
    if prune is None:
        return False
    details: dict[str, Any] = prune.details
    return details.get("through_sequence") == sequence and details.get("anchor_hash") == anchor_hash


def _forgery(keyring: AuditKeyring, row: AuditLog, problem: MacProblem) -> tuple[Problem, str]:
    """Edited (an id the application issued) or inserted (one it did not), for a bad MAC."""
    if keyring.issuer_of(row.id) is not None:
        if problem is MacProblem.MISSING:
            return Problem.EDITED, "its key id and MAC were removed (made to look unkeyed)"
        return Problem.EDITED, f"its content does not match its MAC ({problem.value})"
    return (
        Problem.INSERTED,
        f"not written by the application: its id was not issued under the key ({problem.value})",
    )


class _ChainWalk:
    """One pass over the sealed records of a chain, in sequence order."""

    def __init__(
        self, session: AsyncSession, chain: str, keyring: AuditKeyring | None, start: int, prev: str
    ):
        self.session, self.chain, self.keyring = session, chain, keyring
        self.expected, self.prev_hash = start, prev
        self.findings = Findings()
        self.checked = self.unkeyed = self.unverifiable = self.explained = 0
        self.keyed_seen = self.newest_keyed = self.prev_flagged = False
        self.first_unverifiable: int | None = None
        self.last_move: tuple[int, Problem, str] | None = None

    def flag(self, problem: Problem, row: AuditLog, detail: str) -> None:
        self.findings.add(Finding(problem, row.sequence, detail, row.id))

    def _link_of(self, row: AuditLog) -> tuple[Link | None, tuple[Problem, str] | None]:
        """How `row`'s link is computed, or what is wrong with the record itself."""
        keyring = self.keyring
        if row.key_id is not None:
            self.keyed_seen = True
            if keyring is None:
                self.unverifiable += 1
                self.first_unverifiable = self.first_unverifiable or row.sequence
                return None, None
            key = keyring.get(row.key_id)
            if key is None and keyring.issuer_of(row.id) is None:
                return None, (
                    Problem.UNVERIFIABLE,
                    f"signed with unknown key id {row.key_id!r} (inserted, or "
                    "a retired key missing from AUDIT_HMAC_PREVIOUS_KEYS)",
                )
            problem = mac_problem(keyring, _content(row))
            if key is None or problem is not None:
                return None, _forgery(keyring, row, problem or MacProblem.UNKNOWN_KEY)
            return key.chain_hash, None
        if keyring is not None:
            if keyring.issuer_of(row.id) is not None:
                return None, _forgery(keyring, row, MacProblem.MISSING)
            if self.keyed_seen:
                return None, (
                    Problem.INSERTED,
                    "an unkeyed record after keyed ones: not written under the key",
                )
            self.unkeyed += 1
        return record_hash, None

    async def _explain_move(self, row: AuditLog, link: Link) -> tuple[Problem, str, int] | None:
        # A record renumbered without the key keeps the link it was sealed with: find where.
        content, sequence = _content(row), int(row.sequence or 0)
        for offset in MOVE_SEARCH:
            if link({**content, "sequence": sequence + offset}) != row.hash:
                continue
            before = await self.session.scalar(
                select(AuditLog.sequence).where(AuditLog.chain == self.chain, AuditLog.hash == row.prev_hash)
            )
            if before is None and row.prev_hash != GENESIS_HASH:
                detail = f"the record sealed before it is missing; the rest renumbered by {offset}"
                return Problem.DELETED, detail, offset
            return (
                Problem.REORDERED,
                f"moved: sealed at the sequence {offset:+d} from where it is now",
                offset,
            )
        return None

    async def check(self, row: AuditLog) -> None:
        assert row.sequence is not None
        gap = row.sequence > self.expected
        if gap:
            missing = f"{self.expected}..{row.sequence - 1}" if row.sequence - 1 > self.expected else ""
            detail = (
                f"records {missing} missing (sequence gap)" if missing else "record missing (sequence gap)"
            )
            self.findings.add(Finding(Problem.DELETED, self.expected, detail))
        linked = gap or row.prev_hash == self.prev_hash
        link, wrong = self._link_of(row)
        flagged = wrong is not None
        if wrong is not None:
            self.flag(wrong[0], row, wrong[1])
        elif link is not None and link(_content(row)) != row.hash:
            flagged = True
            await self._misplaced(row, link, linked)
        elif not linked and not self.prev_flagged:
            flagged = True
            self.flag(Problem.REORDERED, row, "prev_hash does not link to the previous record")
        if link is None or wrong is not None or not flagged:
            self.last_move = None
        self.prev_flagged = flagged
        self.newest_keyed = row.key_id is not None
        self.prev_hash, self.expected, self.checked = row.hash or "", row.sequence + 1, self.checked + 1

    async def _misplaced(self, row: AuditLog, link: Link, linked: bool) -> None:
        """A record whose own link does not verify at its place."""
        last, sequence = self.last_move, int(row.sequence or 0)
        if (
            last is not None
            and linked
            and link({**_content(row), "sequence": sequence + last[0]}) == row.hash
        ):
            self.flag(last[1], row, last[2])  # moved with the record before it: one run
            return
        move = None
        if self.explained < MAX_EXPLAINED_MOVES:
            self.explained += 1
            move = await self._explain_move(row, link)
        if move is not None:
            self.last_move = (move[2], move[0], move[1])
            self.flag(move[0], row, move[1])
        elif row.key_id is None:
            self.last_move = None
            self.flag(Problem.EDITED, row, "its content does not match its hash")
        elif record_hash(row) == row.hash:
            self.last_move = None
            self.flag(Problem.RELINKED, row, "its link was recomputed with plain SHA-256, not the key")
        else:
            self.last_move = None
            self.flag(Problem.RELINKED, row, "its link does not verify under the key (rewritten without it)")


async def _outside(session: AsyncSession, chain: str, anchor: int, head: int) -> list[AuditLog]:
    statement = (
        select(AuditLog)
        .where(AuditLog.chain == chain, or_(AuditLog.sequence > head, AuditLog.sequence <= anchor))
        .order_by(AuditLog.sequence)
        .limit(51)
    )
    return list((await session.scalars(statement)).all())


async def _check_unsealed(session: AsyncSession, chain: str, walk: _ChainWalk) -> None:
    """Name every pending record the sealer refused, and under a key every one with a bad MAC."""
    keyring = walk.keyring
    condition = AuditLog.seal_refused.is_not(None) if keyring is None else AuditLog.id.is_not(None)
    statement = (
        select(AuditLog)
        .where(AuditLog.chain == chain, AuditLog.sequence.is_(None), condition)
        .order_by(AuditLog.timestamp, AuditLog.id)
    )
    for row in await session.scalars(statement):
        problem = None if keyring is None else mac_problem(keyring, _content(row))
        if problem is None and row.seal_refused is None:
            continue
        state = f"refused by the sealer ({row.seal_refused})" if row.seal_refused else "not sealed yet"
        if problem is None:
            detail = state if keyring is None else f"{state} although its MAC verifies: the mark was forged"
        else:
            kind, what = _forgery(keyring, row, problem) if keyring is not None else (Problem.EDITED, "")
            detail = f"{kind.value}, {state}: {what}"
        walk.findings.add(Finding(Problem.FORGED_MAC, None, detail, row.id))


async def verify_chain(
    session: AsyncSession,
    chain: str = GLOBAL_CHAIN,
    checkpoint: Checkpoint | None = None,
    batch_size: int = BATCH_SIZE,
    max_unsealed_age: timedelta = MAX_UNSEALED_AGE,
) -> VerifyResult:
    """Check `chain` end to end; read-only (pending records are reported, not sealed)."""
    head = await load_head(session, chain)
    head_sequence = head.sequence if head else 0
    head_hash = head.hash if head else GENESIS_HASH
    anchor_sequence = head.pruned_sequence if head else 0
    anchor_hash = head.pruned_hash if head else GENESIS_HASH
    walk = _ChainWalk(session, chain, keyring_of(session), anchor_sequence + 1, anchor_hash)
    findings = walk.findings

    def result(pending: int = 0) -> VerifyResult:
        listed = findings.listed
        first = listed[0] if listed else None
        return VerifyResult(
            chain,
            not findings,
            walk.checked,
            head_sequence,
            head_hash,
            None if first is None else (first.sequence if first.sequence is not None else head_sequence + 1),
            None if first is None else first.describe(),
            pending,
            tuple(findings.lines()),
            walk.unkeyed,
        )

    if head is None:
        first = await session.scalar(select(func.min(AuditLog.sequence)).where(AuditLog.chain == chain))
        if first is not None:
            findings.add(Finding(Problem.HEAD, int(first), "the chain head row is missing"))
            return result()

    if anchor_sequence and not _anchor_matches(
        await _latest_prune(session, chain, head_sequence), anchor_sequence, anchor_hash
    ):
        findings.add(
            Finding(Problem.ANCHOR, anchor_sequence + 1, "the prune anchor matches no audit_pruned record")
        )
        return result()

    checkpoint_seen = checkpoint is None or checkpoint.sequence == 0
    if checkpoint is not None and 0 < checkpoint.sequence <= anchor_sequence:
        # The checkpoint predates the prune; it can only be compared with the anchor.
        checkpoint_seen = checkpoint.sequence < anchor_sequence or checkpoint.hash == anchor_hash
        if not checkpoint_seen:
            findings.add(
                Finding(Problem.CHECKPOINT, anchor_sequence, "the prune anchor differs from the checkpoint")
            )
            return result()
    while True:
        # Only records up to the head read above: newer ones belong to later transactions.
        statement = (
            select(AuditLog)
            .where(
                AuditLog.chain == chain,
                AuditLog.sequence >= walk.expected,
                AuditLog.sequence <= head_sequence,
            )
            .order_by(AuditLog.sequence)
            .limit(batch_size)
            .execution_options(populate_existing=True)
        )
        rows = list((await session.scalars(statement)).all())
        for row in rows:
            await walk.check(row)
            if checkpoint is not None and row.sequence == checkpoint.sequence:
                if row.hash != checkpoint.hash:
                    walk.flag(Problem.CHECKPOINT, row, "record differs from the checkpoint")
                checkpoint_seen = True
        session.expunge_all()
        if len(rows) < batch_size:
            break
    if walk.expected - 1 != head_sequence:
        detail = f"records missing before the head (truncated): the chain ends at {walk.expected - 1}"
        findings.add(Finding(Problem.TRUNCATED, walk.expected, detail))
    elif walk.prev_hash != head_hash:
        findings.add(Finding(Problem.HEAD, head_sequence, "the head hash does not match the newest record"))
    if not checkpoint_seen:
        assert checkpoint is not None
        detail = f"the checkpoint names sequence {checkpoint.sequence}, past the head"
        findings.add(Finding(Problem.TRUNCATED, head_sequence + 1, detail))
    if walk.unverifiable:
        detail = f"{walk.unverifiable} keyed records not checked: set AUDIT_HMAC_KEY to verify them"
        findings.add(Finding(Problem.UNVERIFIABLE, walk.first_unverifiable, detail))
    elif walk.keyring is not None and walk.checked and not walk.newest_keyed:
        detail = (
            "the newest record is unkeyed although AUDIT_HMAC_KEY is set: the chain may have been rewritten "
            "without the key (right after the key is first set, any audited action seals a keyed record)"
        )
        findings.add(Finding(Problem.DOWNGRADED, head_sequence, detail))
    outside = await _outside(session, chain, anchor_sequence, head_sequence)
    fresh = await load_head(session, chain)  # records a sealer committed meanwhile are not forged
    for row in outside:
        assert row.sequence is not None
        if row.sequence <= anchor_sequence:
            walk.flag(Problem.INSERTED, row, f"sealed at or before the prune anchor ({anchor_sequence})")
        elif fresh is None or row.sequence > fresh.sequence:
            walk.flag(Problem.BEYOND_HEAD, row, f"sealed past the chain head ({head_sequence})")
    await _check_unsealed(session, chain, walk)
    pending, oldest = await count_unsealed(session, chain)
    if oldest is not None and utcnow() - oldest > max_unsealed_age:
        seconds = int(max_unsealed_age.total_seconds())
        reason = (
            f"{pending} records not sealed, the oldest for more than {seconds} s "
            "(is a sealer running? `agentkeep audit seal`)"
        )
        findings.add(Finding(Problem.STALE, head_sequence + 1, reason))
    return result(pending)
