"""Reading what an OpenAI-compatible server received, in the chat completions wire format.

A request's `messages` are `{"role": "system" | "user" | "assistant" | "tool", ...}`; an
assistant message may carry `tool_calls: [{"id", "type": "function", "function": {"name",
"arguments"}}]` (arguments: a JSON text), and each call is answered by a `{"role": "tool",
"tool_call_id", "content"}` message. The readings and the estimate here are the tests'
own, written from that format and the documented rule, not taken from the product's code.
"""

from __future__ import annotations

import json
import math
from typing import Any

import httpx

Message = dict[str, Any]


def text(message: Message) -> str:
    """A message's text: `content` is a string, null, or a list of `{"type": "text"}` parts."""
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part["text"] for part in content if part.get("type") == "text")


def tokens(value: str) -> int:
    """The documented estimate: one token per started group of four characters."""
    return math.ceil(len(value) / 4)


def estimate(messages: list[Message]) -> int:
    """The estimate of a request: each system, user, assistant and tool text, and each tool
    call counted as its function name followed by its arguments JSON text."""
    total = 0
    for message in messages:
        total += tokens(text(message))
        for call in message.get("tool_calls") or []:
            total += tokens(call["function"]["name"] + call["function"]["arguments"])
    return total


def roles(messages: list[Message]) -> list[str]:
    return [message["role"] for message in messages]


def user_texts(messages: list[Message]) -> list[str]:
    return [text(message) for message in messages if message["role"] == "user"]


def assert_calls_paired(messages: list[Message]) -> None:
    """Every tool call is answered right after its assistant message, and every tool message
    answers a call of the assistant message before it."""
    index = 0
    while index < len(messages):
        message = messages[index]
        assert message["role"] != "tool", f"tool message {index} answers no call: {message}"
        call_ids = [call["id"] for call in message.get("tool_calls") or []]
        answers = messages[index + 1 : index + 1 + len(call_ids)]
        assert [answer["role"] for answer in answers] == ["tool"] * len(call_ids), (index, messages)
        assert sorted(answer["tool_call_id"] for answer in answers) == sorted(call_ids), (index, messages)
        index += 1 + len(call_ids)


async def run_events(http: httpx.AsyncClient, headers: dict[str, str], run_id: str) -> list[tuple[str, Any]]:
    """(event, data) of each event of a finished run, read from its Server-Sent Events stream."""
    response = await http.get(f"/api/runs/{run_id}/events", headers=headers)
    assert response.status_code == 200, response.text
    events: list[tuple[str, Any]] = []
    fields: dict[str, str] = {}
    for line in [*response.text.splitlines(), ""]:
        if line == "":
            if "event" in fields:
                events.append((fields["event"], json.loads(fields.get("data", "null"))))
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
    return events


def of_kind(events: list[tuple[str, Any]], kind: str) -> list[Any]:
    return [data for name, data in events if name == kind]
