"""A thread's stored messages as people read them: who spoke, what was said, which tools
were called with what, and what they returned.

The stored form is pydantic-ai's (`threads.history`); this is a view of it. A request that
carries a user prompt is the user's message; one that carries only tool results (or retry
prompts, a tool call the model must redo) is the tools'; a response is the assistant's,
with its text and tool calls. Instructions (the system prompt) are not part of the history.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic_ai.messages import (
    ModelRequest,
    ModelResponse,
    RetryPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)

from agentkeep.runs.agent_tools import as_json
from agentkeep.threads.history import load_messages
from agentkeep.threads.models import ThreadMessage
from agentkeep.threads.schemas import ThreadMessageRead, ToolCallRead, ToolResultRead

Role = Literal["user", "assistant", "tool"]


def read_message(row: ThreadMessage) -> ThreadMessageRead:
    (message,) = load_messages([row.message])
    content: str | None = None
    calls: list[ToolCallRead] = []
    results: list[ToolResultRead] = []
    role: Role
    if isinstance(message, ModelResponse):
        role = "assistant"
        text = "".join(part.content for part in message.parts if isinstance(part, TextPart))
        content = text or None
        calls = [
            ToolCallRead(id=part.tool_call_id, name=part.tool_name, args=_args(part))
            for part in message.parts
            if isinstance(part, ToolCallPart)
        ]
    else:
        assert isinstance(message, ModelRequest)
        prompts = [_prompt_text(part) for part in message.parts if isinstance(part, UserPromptPart)]
        role = "user" if prompts else "tool"
        content = "\n".join(prompts) if prompts else None
        results = [
            _result(part) for part in message.parts if isinstance(part, ToolReturnPart | RetryPromptPart)
        ]
    return ThreadMessageRead(
        seq=row.seq,
        run_id=row.run_id,
        role=role,
        content=content,
        tool_calls=calls,
        tool_results=results,
        created_at=row.created_at,
    )


def _prompt_text(part: UserPromptPart) -> str:
    return part.content if isinstance(part.content, str) else str(part.content)


def _args(part: ToolCallPart) -> Any:
    try:
        return part.args_as_dict()
    except ValueError:
        return part.args_as_json_str()


def _result(part: ToolReturnPart | RetryPromptPart) -> ToolResultRead:
    if isinstance(part, RetryPromptPart):
        return ToolResultRead(
            tool_call_id=part.tool_call_id,
            name=part.tool_name or "",
            content=part.model_response(),
            error=True,
        )
    return ToolResultRead(
        tool_call_id=part.tool_call_id,
        name=part.tool_name,
        content=as_json(part.content) if part.outcome == "success" else part.model_response_str(),
        error=part.outcome != "success",
    )
