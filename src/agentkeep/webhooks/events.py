"""The events a webhook can subscribe to, and the envelope each is sent in."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol


class EventType(StrEnum):
    RUN_COMPLETED = "run.completed"
    RUN_FAILED = "run.failed"
    RUN_CANCELLED = "run.cancelled"
    RUN_TIMED_OUT = "run.timed_out"
    RUN_REQUIRES_ACTION = "run.requires_action"
    RUN_EXPIRED = "run.expired"
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
    "expired": EventType.RUN_EXPIRED,
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


class WaitingCall(Protocol):
    @property
    def tool(self) -> str: ...
    @property
    def tool_call_id(self) -> str: ...


def waiting_data(run_id: uuid.UUID, calls: Iterable[WaitingCall], deadline: datetime) -> dict[str, Any]:
    """A paused run's event: which tool calls wait for a decision (never their arguments)."""
    return {
        "run_id": str(run_id),
        "status": "requires_action",
        "pending": [{"tool": call.tool, "tool_call_id": call.tool_call_id} for call in calls],
        "deadline": deadline.isoformat().replace("+00:00", "Z"),
    }
