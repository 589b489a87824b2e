"""Notification topics: what changed, never any content (payloads are ids)."""

from __future__ import annotations

import uuid

# Every session or API key revocation: principal caches drop what they hold.
REVOCATIONS = "revoked"


def run_events(run_id: uuid.UUID) -> str:
    """The run appended events (its status included)."""
    return f"run:{run_id}"


def run_cancel(run_id: uuid.UUID) -> str:
    """Someone asked the run's runner to stop."""
    return f"cancel:{run_id}"
