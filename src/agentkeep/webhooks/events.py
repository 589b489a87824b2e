"""The events a webhook can subscribe to, and the envelope each is sent in."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any


class EventType(StrEnum):
    RUN_COMPLETED = "run.completed"
    RUN_FAILED = "run.failed"
    RUN_CANCELLED = "run.cancelled"
    RUN_TIMED_OUT = "run.timed_out"
    THREAD_CREATED = "thread.created"
    AGENT_UPDATED = "agent.updated"


# Sent by the test-ping endpoint to one webhook, whatever it subscribes to.
PING = "webhook.ping"
# A run's final status -> the event announcing it.
RUN_FINISHED_EVENTS = {
    "completed": EventType.RUN_COMPLETED,
    "failed": EventType.RUN_FAILED,
    "cancelled": EventType.RUN_CANCELLED,
    "timed_out": EventType.RUN_TIMED_OUT,
}


def run_event(status: str) -> str:
    """The event of a run's final status."""
    return str(RUN_FINISHED_EVENTS.get(status, f"run.{status}"))


# Keys of `data` kept only for webhooks that opted in with include_content.
CONTENT_KEYS = frozenset({"output"})


def envelope(event_type: str, at: datetime, data: dict[str, Any]) -> dict[str, Any]:
    """What is sent: small, ids and statuses; `data` never holds a secret."""
    return {"type": event_type, "timestamp": at.isoformat().replace("+00:00", "Z"), "data": data}


def for_webhook(data: dict[str, Any], include_content: bool) -> dict[str, Any]:
    return data if include_content else {k: v for k, v in data.items() if k not in CONTENT_KEYS}
