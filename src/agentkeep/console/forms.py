"""Turning HTML form fields into the API's request bodies (presentation only: the API's
own schemas then validate them, and their errors are shown as the API would report them)."""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import FormData

from agentkeep.rbac.permissions import Role

LIMIT_FIELDS = ("max_steps", "max_output_tokens", "timeout_seconds", "max_tool_errors", "max_context_tokens")
APPROVER_ROLES = tuple(role.value for role in Role)


def _integer(value: str) -> int | str:
    """A whole number as the JSON body would carry it; anything else as typed, for the
    schema to refuse with its own message."""
    text = value.strip()
    return int(text) if text.lstrip("-").isdigit() and len(text) < 20 else text


def _json_list(value: str) -> Any:
    text = value.strip()
    if not text:
        return []
    try:
        return json.loads(text)
    except ValueError:
        return text  # "Input should be a valid list": the schema's own words


def agent_body(form: FormData) -> dict[str, Any]:
    """An AgentCreate/AgentUpdate body from the agent form (every field of the form)."""
    body: dict[str, Any] = {
        "name": str(form.get("name", "")),
        "description": str(form.get("description", "")),
        "model": str(form.get("model", "")),
        "system_prompt": str(form.get("system_prompt", "")),
        "tools": _json_list(str(form.get("tools", ""))),
        "status": str(form.get("status", "active")),
        "approvers": [str(role) for role in form.getlist("approvers")],
        "approval_timeout_seconds": _integer(str(form.get("approval_timeout_seconds", ""))),
    }
    limits: dict[str, Any] = {}
    for name in LIMIT_FIELDS:
        raw = str(form.get(name, "")).strip()
        if raw:
            limits[name] = _integer(raw)
        elif name == "max_context_tokens":
            limits[name] = None  # an empty box: no trimming
    body["limits"] = limits
    return body


def tools_text(tools: list[dict[str, Any]]) -> str:
    return json.dumps(tools, indent=2) if tools else ""


@dataclass(frozen=True, slots=True)
class DiffLine:
    kind: str  # "added", "removed", "context", "hunk"
    text: str


def config_diff(old: dict[str, Any], new: dict[str, Any]) -> list[DiffLine]:
    """A unified diff of two agent configurations, each written as sorted, indented JSON."""
    before = json.dumps(old, indent=2, sort_keys=True).splitlines()
    after = json.dumps(new, indent=2, sort_keys=True).splitlines()
    lines: list[DiffLine] = []
    for line in difflib.unified_diff(before, after, lineterm="", n=2):
        if line.startswith(("---", "+++")):
            continue
        kind = {"@": "hunk", "+": "added", "-": "removed"}.get(line[:1], "context")
        lines.append(DiffLine(kind, line))
    return lines
