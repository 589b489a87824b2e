"""A local OpenAI-compatible chat completions server that answers after a delay, scripted
for the scale benchmarks: two model calls per run.

    FAKE_OPENAI_DELAY=1.0 uvicorn bench.fake_openai:create_app --factory

`POST /v1/chat/completions`:
- no tool result in the conversation yet, and the last user message holds arithmetic
  (`What is 12*7+1?`), and the request offers the `calculator` tool: a call of
  `calculator` with that expression;
- otherwise a text answer: `The answer is <the last tool result>.` (or `Done.`).

Every answer waits the delay first (FAKE_OPENAI_DELAY seconds, or the number in a model
named `delay-<seconds>`, e.g. `openai:delay-30` for a run that stays on its model call).
`GET /v1/stats` counts the completions answered.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from typing import Any

from starlette.types import Receive, Scope, Send

ARITHMETIC = re.compile(r"[0-9][0-9+\-*/(). ]*[0-9)]")
DELAY_MODEL = re.compile(r"^delay-([0-9.]+)$")


def _content(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):  # content parts
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content or "")


def answer(body: dict[str, Any]) -> dict[str, Any]:
    messages: list[dict[str, Any]] = body.get("messages", [])
    tools = {tool.get("function", {}).get("name") for tool in body.get("tools", [])}
    results = [_content(m) for m in messages if m.get("role") == "tool"]
    user = next((_content(m) for m in reversed(messages) if m.get("role") == "user"), "")
    expression = ARITHMETIC.search(user)
    message: dict[str, Any]
    if not results and expression and "calculator" in tools:
        arguments = json.dumps({"expression": expression.group(0).strip()})
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "calculator", "arguments": arguments},
                }
            ],
        }
        finish = "tool_calls"
    else:
        text = f"The answer is {results[-1]}." if results else "Done."
        message = {"role": "assistant", "content": text}
        finish = "stop"
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "bench"),
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 8, "total_tokens": 28},
    }


def create_app() -> Any:
    default_delay = float(os.environ.get("FAKE_OPENAI_DELAY", "1.0"))
    served = {"requests": 0}

    async def reply(send: Send, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"].endswith("/stats"):
            await reply(send, 200, served)
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = json.loads(b"".join(chunks) or b"{}")
        named = DELAY_MODEL.match(str(body.get("model", "")))
        await asyncio.sleep(float(named.group(1)) if named else default_delay)
        served["requests"] += 1
        await reply(send, 200, answer(body))

    return app
