"""Run vocabulary as data: statuses, stop reasons and event kinds."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    # Paused on tool calls that wait for a person's approval: no worker holds it.
    REQUIRES_ACTION = "requires_action"
    # No decision came within the agent's approval_timeout_seconds.
    EXPIRED = "expired"


TERMINAL_STATUSES = frozenset(
    {RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.TIMED_OUT, RunStatus.EXPIRED}
)
# Not finished (queued, running, requires_action): a thread with such a run has a turn in
# progress (multitask policies).
ACTIVE_STATUSES = frozenset(set(RunStatus) - TERMINAL_STATUSES)


class StopReason(StrEnum):
    END_TURN = "end_turn"
    MAX_STEPS = "max_steps"
    MAX_TOKENS = "max_tokens"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    BUDGET_EXCEEDED = "budget_exceeded"
    TOOL_ERROR = "tool_error"
    MODEL_ERROR = "model_error"
    INTERNAL_ERROR = "internal_error"
    EXPIRED = "expired"


class EventKind(StrEnum):
    STATUS = "status"  # {"status": ..., "stop_reason"?: ..., "attempt"?: ...}
    MODEL_REQUEST = "model_request"  # {"step": n}
    MODEL_RESPONSE = "model_response"  # {"step": n, "text"?: ..., "tool_calls": [...], "usage": {...}}
    TOOL_CALL = "tool_call"  # {"tool": name, "tool_call_id": ..., "args": {...}}
    TOOL_RESULT = "tool_result"  # {"tool": name, "tool_call_id": ..., "result"?: ..., "error"?: ...}
    OUTPUT = "output"  # {"text": ...}
    # {"dropped_turns": n, "dropped_messages": n, "estimated_tokens_before": n,
    #  "estimated_tokens": n, "max_context_tokens": n, "fits": bool}
    CONTEXT_TRIMMED = "context_trimmed"
    # {"tool": name, "tool_call_id": ..., "args": {...}, "deadline": iso}: the run pauses.
    APPROVAL_REQUESTED = "approval_requested"
    # {"tool": name, "tool_call_id": ..., "decision": "approve"|"deny", "reason"?: ...,
    #  "decided_by": user id, "api_key_id"?: ...}
    APPROVAL_DECIDED = "approval_decided"
