"""What `verify` found wrong with a chain: one named finding per record (or run of records)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from enum import StrEnum

# Enough to name every record of a realistic attack; the rest is counted, not listed.
MAX_LISTED = 50


class Problem(StrEnum):
    """What is wrong, in the words `agentkeep audit verify` prints first on each line."""

    EDITED = "edited"
    DELETED = "deleted"
    INSERTED = "inserted"
    REORDERED = "reordered"
    RELINKED = "relinked"
    TRUNCATED = "truncated"
    FORGED_MAC = "forged MAC"
    BEYOND_HEAD = "beyond head"
    DOWNGRADED = "downgraded"
    HEAD = "head mismatch"
    ANCHOR = "prune anchor moved"
    CHECKPOINT = "checkpoint mismatch"
    STALE = "not sealed"
    UNVERIFIABLE = "unverifiable"


@dataclass(frozen=True, slots=True)
class Finding:
    problem: Problem
    sequence: int | None
    detail: str
    record_id: uuid.UUID | None = None
    last_sequence: int | None = None  # a run of consecutive records with the same problem

    def describe(self) -> str:
        if self.sequence is None:
            where = f"unsealed record {self.record_id}"
        elif self.last_sequence is not None and self.last_sequence != self.sequence:
            where = f"sequences {self.sequence}..{self.last_sequence}"
        else:
            where = f"sequence {self.sequence}"
            if self.record_id is not None:
                where += f" (record {self.record_id})"
        return f"{self.problem}: {where}: {self.detail}"


class Findings:
    """Findings in the order found; a run of consecutive records with one problem is one line."""

    def __init__(self) -> None:
        self.listed: list[Finding] = []
        self.total = 0

    def __bool__(self) -> bool:
        return self.total > 0

    def add(self, finding: Finding) -> None:
        last = self.listed[-1] if self.listed else None
        if (
            last is not None
            and finding.sequence is not None
            and (last.problem, last.detail) == (finding.problem, finding.detail)
            and (last.last_sequence or last.sequence) == finding.sequence - 1
        ):
            self.listed[-1] = replace(last, last_sequence=finding.sequence, record_id=None)
            return
        self.total += 1
        if len(self.listed) < MAX_LISTED:
            self.listed.append(finding)

    def lines(self) -> list[str]:
        shown = [finding.describe() for finding in self.listed]
        if self.total > len(self.listed):
            shown.append(f"... and {self.total - len(self.listed)} more")
        return shown
