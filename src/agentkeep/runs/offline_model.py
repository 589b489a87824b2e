"""The built-in `test` model: a deterministic pydantic-ai `FunctionModel`, no network.

It plays a small, predictable agent so runs, limits and budgets work on a fresh machine:

- first request, agent with tools: it calls each tool it has arguments for, all in one
  response — `calculator` with the longest arithmetic expression in the input, `current_time`
  with default arguments, `http_get` with the first http(s) URL in the input;
- once tool results are in: it answers with one line per result, `calculator: 20` (a
  failed call `<tool>: error: <message>`, a call a person denied `<tool>: denied: <reason>`);
- an input naming MCP tools the agent has, `mcp:<server>/<tool>`, each optionally followed
  by a JSON object of arguments (`mcp:calc/add {"a": 2, "b": 3}`), calls them too, in the
  order named, with those arguments (none: `{}`);
- no tools (or none it can call): it answers `echo: <the input, whitespace collapsed>`;
- an input containing `#loop` makes it call its tools again on every request and never
  answer, so the agent's step limit ends the run;
- an input containing `#recall` makes it answer from the conversation instead: the user
  messages said before this one (the thread's earlier turns, as far as the history sent
  holds them), numbered, `recall: 1. <first> | 2. <second>`, or `recall: nothing earlier`.

"The input" is the latest user message: in a thread, earlier turns are history, and tools
are called for what the user says now.

Token usage is counted, not estimated: one token per started group of four characters of
every text the request carries (instructions, the input, earlier responses and tool results;
see `runs.tokens`) plus `REQUEST_OVERHEAD_TOKENS`, and of the response's text and tool
calls. Like a real model it honours the `max_tokens` setting: a text answer longer than
that is cut to `max_tokens` tokens and finishes with the reason `length`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic_ai.messages import (
    FinishReason,
    ModelMessage,
    ModelRequest,
    ModelResponse,
    ModelResponsePart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.usage import RequestUsage

from agentkeep.runs.tokens import CHARS_PER_TOKEN, count_tokens, part_text
from agentkeep.tools.registry import MCP_SERVER_PATTERN, MCP_TOOL_PATTERN, McpToolName

__all__ = ["CHARS_PER_TOKEN", "LOOP_MARKER", "MODEL_NAME", "count_tokens", "offline_model", "reply"]

MODEL_NAME = "test"
LOOP_MARKER = "#loop"
RECALL_MARKER = "#recall"
REQUEST_OVERHEAD_TOKENS = 10
ECHO_MAX_CHARS = 200

# Runs of digits, operators, parentheses and spaces that start and end like an expression.
_EXPRESSION = re.compile(r"[\d(.][\d\s+\-*/%().]*[\d)]|\d")
_OPERATOR = re.compile(r"[+\-*/%]")
_URL = re.compile(r"https?://[^\s<>\"']+")
_URL_TRAILING = ".,;:!?)]}"
_MCP_CALL = re.compile(rf"mcp:(?P<server>{MCP_SERVER_PATTERN})/(?P<tool>{MCP_TOOL_PATTERN})")
_JSON = json.JSONDecoder()


def find_expression(text: str) -> str | None:
    """The longest arithmetic expression in `text` (with at least one operator), if any."""
    candidates = [m.group().strip() for m in _EXPRESSION.finditer(text)]
    expressions = [c for c in candidates if _OPERATOR.search(c.lstrip("-"))]
    return max(expressions, key=len) if expressions else None


def find_url(text: str) -> str | None:
    """The first http or https URL in `text`, without trailing punctuation."""
    match = _URL.search(text)
    return match.group().rstrip(_URL_TRAILING) if match else None


def mcp_calls(text: str, tool_names: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """The MCP tools `text` names that the agent has (by the names the model sees), each with
    the JSON object that follows its name, if any."""
    calls: list[tuple[str, dict[str, Any]]] = []
    for match in _MCP_CALL.finditer(text):
        name = McpToolName(match["server"], match["tool"]).model_name
        if name not in tool_names:
            continue
        rest = text[match.end() :].lstrip()
        args: dict[str, Any] = {}
        if rest.startswith("{"):
            try:
                value, _end = _JSON.raw_decode(rest)
            except ValueError:
                value = None
            if isinstance(value, dict):
                args = value
        calls.append((name, args))
    return calls


def planned_calls(text: str, tool_names: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """The tool calls the offline model makes for `text`: the built-in tools in the order the
    tools are listed, then the MCP tools named."""
    calls: list[tuple[str, dict[str, Any]]] = []
    for name in tool_names:
        if name == "calculator" and (expression := find_expression(text)) is not None:
            calls.append((name, {"expression": expression}))
        elif name == "current_time":
            calls.append((name, {}))
        elif name == "http_get" and (url := find_url(text)) is not None:
            calls.append((name, {"url": url}))
    return calls + mcp_calls(text, tool_names)


def _user_messages(messages: list[ModelMessage]) -> list[str]:
    """Every user message in the history sent, oldest first (one per request that has any)."""
    said: list[str] = []
    for message in messages:
        if not isinstance(message, ModelRequest):
            continue
        parts = [part.content for part in message.parts if isinstance(part, UserPromptPart)]
        if parts:
            said.append("\n".join(part if isinstance(part, str) else str(part) for part in parts))
    return said


def _collapsed(text: str) -> str:
    return " ".join(text.split())[:ECHO_MAX_CHARS]


def _recall(earlier: list[str]) -> str:
    if not earlier:
        return "recall: nothing earlier"
    return "recall: " + " | ".join(f"{index}. {_collapsed(text)}" for index, text in enumerate(earlier, 1))


def _input_tokens(messages: list[ModelMessage], instructions: str | None) -> int:
    texts = [instructions or ""] + [part_text(part) for message in messages for part in message.parts]
    return REQUEST_OVERHEAD_TOKENS + sum(count_tokens(text) for text in texts if text)


def _format_result(part: ToolReturnPart) -> str:
    content = part.content
    text = content if isinstance(content, str) else json.dumps(content, sort_keys=True, default=str)
    marker = {"success": "", "denied": "denied: "}.get(part.outcome, "error: ")
    return f"{part.tool_name}: {marker}{text}"


def _latest_results(messages: list[ModelMessage]) -> list[ToolReturnPart]:
    last = messages[-1] if messages else None
    if not isinstance(last, ModelRequest):
        return []
    return [part for part in last.parts if isinstance(part, ToolReturnPart)]


def reply(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """The offline model's answer to one request (see the module docstring)."""
    said = _user_messages(messages)
    text = said[-1] if said else ""
    tool_names = [tool.name for tool in info.function_tools]
    results = _latest_results(messages)
    calls = planned_calls(text, tool_names)
    if LOOP_MARKER in text and not calls and tool_names:
        calls = [(tool_names[0], {})]
    parts: list[ModelResponsePart]
    if RECALL_MARKER in text and LOOP_MARKER not in text:
        calls = []
    if calls and (not results or LOOP_MARKER in text):
        step = sum(isinstance(message, ModelResponse) for message in messages) + 1
        parts = [
            ToolCallPart(name, args, tool_call_id=f"call_{step}_{index}")
            for index, (name, args) in enumerate(calls, start=1)
        ]
        answer = None
    elif results:
        answer = "\n".join(_format_result(part) for part in results)
    elif RECALL_MARKER in text:
        answer = _recall(said[:-1])
    else:
        answer = "echo: " + _collapsed(text)
    finish_reason: FinishReason = "tool_call" if answer is None else "stop"
    if answer is not None:
        limit = (info.model_settings or {}).get("max_tokens")
        if limit is not None and count_tokens(answer) > limit:
            answer = answer[: max(limit, 0) * CHARS_PER_TOKEN]
            finish_reason = "length"
        parts = [TextPart(answer)]
    output_tokens = sum(count_tokens(part_text(part)) for part in parts)
    return ModelResponse(
        parts=parts,
        usage=RequestUsage(
            input_tokens=_input_tokens(messages, info.instructions), output_tokens=max(output_tokens, 1)
        ),
        finish_reason=finish_reason,
    )


async def _reply_inline(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    # A coroutine function: pydantic-ai calls it on the event loop. `reply` is quick and pure,
    # and a plain function would be sent to a worker thread for every request.
    return reply(messages, info)


def offline_model() -> FunctionModel:
    """A fresh instance of the `test` model."""
    return FunctionModel(_reply_inline, model_name=MODEL_NAME)
