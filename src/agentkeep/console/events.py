"""A run's events as people read them: one EventView per event, shared by the run page's
timeline and the chat's live stream (both render partials/event.html)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, replace
from typing import Any

from agentkeep.runs.states import EventKind, RunStatus

KIND_LABELS = {
    EventKind.STATUS: "Status",
    EventKind.MODEL_REQUEST: "Model request",
    EventKind.MODEL_RESPONSE: "Model",
    EventKind.TOOL_CALL: "Tool call",
    EventKind.TOOL_RESULT: "Tool result",
    EventKind.OUTPUT: "Answer",
    EventKind.CONTEXT_TRIMMED: "History trimmed",
    EventKind.APPROVAL_REQUESTED: "Approval requested",
    EventKind.APPROVAL_DECIDED: "Approval decided",
}


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


@dataclass(frozen=True, slots=True)
class EventView:
    run_id: uuid.UUID
    seq: int
    kind: str
    label: str
    text: str | None = None  # model text, answer, status line
    tool: str | None = None
    tool_call_id: str | None = None
    detail: str | None = None  # arguments, result or other data, as indented JSON
    error: bool = False
    awaiting_decision: bool = False  # an approval request still open: show the buttons


def event_view(
    run_id: uuid.UUID, seq: int, kind: str, data: dict[str, Any], *, open_calls: set[str]
) -> EventView:
    label = KIND_LABELS.get(EventKind(kind), kind) if kind in EventKind._value2member_map_ else kind
    base = EventView(run_id, seq, kind, label)
    if kind == EventKind.STATUS:
        text = str(data.get("status", ""))
        if data.get("stop_reason"):
            text += f" ({data['stop_reason']})"
        return replace(base, text=text)
    if kind == EventKind.MODEL_RESPONSE:
        calls = data.get("tool_calls") or []
        return replace(base, text=data.get("text") or None, detail=_json(calls) if calls else None)
    if kind == EventKind.OUTPUT:
        return replace(base, text=str(data.get("text", "")))
    if kind in (EventKind.TOOL_CALL, EventKind.APPROVAL_REQUESTED):
        call_id = str(data.get("tool_call_id", ""))
        return replace(
            base,
            tool=str(data.get("tool", "")),
            tool_call_id=call_id,
            detail=_json(data.get("args", {})),
            awaiting_decision=kind == EventKind.APPROVAL_REQUESTED and call_id in open_calls,
        )
    if kind == EventKind.TOOL_RESULT:
        failed = data.get("error") is not None
        return replace(
            base,
            tool=str(data.get("tool", "")),
            tool_call_id=str(data.get("tool_call_id", "")),
            detail=_json(data.get("error") if failed else data.get("result")),
            error=failed,
        )
    if kind == EventKind.APPROVAL_DECIDED:
        text = str(data.get("decision", ""))
        if data.get("reason"):
            text += f": {data['reason']}"
        return replace(
            base, tool=str(data.get("tool", "")), tool_call_id=str(data.get("tool_call_id")), text=text
        )
    if kind == EventKind.MODEL_REQUEST:
        return replace(base, text=f"step {data.get('step', '?')}")
    return replace(base, detail=_json(data))


def open_approvals(status: str, events: list[tuple[str, dict[str, Any]]]) -> set[str]:
    """The tool calls a paused run still waits on, from its events."""
    if status != RunStatus.REQUIRES_ACTION:
        return set()
    requested = {
        str(data.get("tool_call_id")) for kind, data in events if kind == EventKind.APPROVAL_REQUESTED
    }
    decided = {str(data.get("tool_call_id")) for kind, data in events if kind == EventKind.APPROVAL_DECIDED}
    return requested - decided
