"""An OpenAI-compatible model on 127.0.0.1 for many runs at once: two calls per run, held on demand.

Each run's input reads `<task>: what is <expression>?`. The model's first call for it asks
for the `calculator` with that expression; once the conversation carries the tool's result,
it answers `<task>: <result>`. Every answer leaves after `answer_after` seconds, a model that
takes its time; while the server is `holding`, requests that arrive wait until `release()`
(the runs stay inside their model call for as long as the test needs). Waiting costs
nothing per request: no polling, so hundreds of held requests leave the CPU to the workers.

Idle connections stay open for `KEEP_ALIVE_SECONDS`, longer than a client keeps them (httpx:
5 s), as hosted providers do: a server that closed them after exactly as long as the client
(uvicorn's default, 5 s) would now and then close one just as the client sent a request on
it, and that request would fail without reaching the model.

The server keeps its own log of every call (`calls`): which task it served, which of the
two steps it was, the tool result it carried, and whether it arrived while held.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse

from tests.support.chat_server import ChatServer, running_chat_server, text_reply, tool_call_reply

KEEP_ALIVE_SECONDS = 120
TASK = re.compile(r"^(?P<task>\S+): what is (?P<expression>[^?]+)\?$")


@dataclass(frozen=True)
class ModelCall:
    task: str
    # 1: asked for the calculator; 2: answered from its result.
    step: int
    tool_result: str | None
    held: bool


def _text(content: Any) -> str:
    if isinstance(content, list):  # content parts
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content or "")


@dataclass
class CalculatorModel(ChatServer):
    answer_after: float = 0.0
    holding: bool = False
    calls: list[ModelCall] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _released: asyncio.Event | None = None
    _loop: asyncio.AbstractEventLoop | None = None

    def hold(self) -> None:
        """From now on, requests wait for `release()` before their answer."""
        with self._lock:
            self.holding = True

    def release(self) -> None:
        """Let every held request answer; requests that arrive later are not held."""
        with self._lock:
            self.holding = False
            released, self._released = self._released, None
            if released is not None and self._loop is not None:
                self._loop.call_soon_threadsafe(released.set)

    async def _completions(self, request: Request) -> JSONResponse | RedirectResponse:
        body = await request.json()
        messages: list[dict[str, Any]] = body.get("messages", [])
        user = next((_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
        results = [_text(m.get("content")) for m in messages if m.get("role") == "tool"]
        asked = TASK.match(user.strip())
        if asked is None:
            return JSONResponse({"error": {"message": f"not a task: {user[:80]!r}"}}, status_code=400)
        task = asked["task"]
        released = self._held()
        self.calls.append(
            ModelCall(task, 2 if results else 1, results[-1] if results else None, released is not None)
        )
        started = time.monotonic()
        if released is not None:
            await released.wait()
        await asyncio.sleep(max(0.0, started + self.answer_after - time.monotonic()))
        if results:
            return JSONResponse(text_reply(f"{task}: {results[-1]}").body)
        arguments = json.dumps({"expression": asked["expression"]})
        return JSONResponse(tool_call_reply([(f"call_{task}", "calculator", arguments)]).body)

    def _held(self) -> asyncio.Event | None:
        """The event this request waits for, or None when the server is not holding."""
        with self._lock:
            if not self.holding:
                return None
            if self._released is None:
                self._loop = asyncio.get_running_loop()
                self._released = asyncio.Event()
            return self._released

    def first_calls_held(self) -> int:
        return sum(call.held and call.step == 1 for call in list(self.calls))


@contextlib.contextmanager
def running_calculator_model(answer_after: float) -> Iterator[CalculatorModel]:
    model = CalculatorModel(answer_after=answer_after)
    with running_chat_server(chat=model, keep_alive_seconds=KEEP_ALIVE_SECONDS):
        try:
            yield model
        finally:
            model.release()  # nothing stays held while the server stops
