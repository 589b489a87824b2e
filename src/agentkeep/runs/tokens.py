"""The token estimate AgentKeep uses where no tokenizer is at hand: one token per started
group of four characters of each text a model request carries.

The offline `test` model charges exactly this, and context trimming (`max_context_tokens`)
measures history with it. Counted texts: the instructions, user prompts, text answers, tool
calls (name and JSON arguments) and tool results (as the model receives them).
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic_ai.messages import (
    ModelMessage,
    RetryPromptPart,
    SystemPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)

CHARS_PER_TOKEN = 4


def count_tokens(text: str) -> int:
    """One token per started group of four characters."""
    return -(-len(text) // CHARS_PER_TOKEN)


def part_text(part: object) -> str:
    """The text of a message part as a model reads it ("" for parts that carry none)."""
    if isinstance(part, SystemPromptPart | TextPart):
        return part.content
    if isinstance(part, UserPromptPart):
        return part.content if isinstance(part.content, str) else str(part.content)
    if isinstance(part, ToolReturnPart):
        return part.model_response_str()
    if isinstance(part, RetryPromptPart):
        return part.model_response()
    if isinstance(part, ToolCallPart):
        return part.tool_name + part.args_as_json_str()
    return ""


def message_tokens(message: ModelMessage) -> int:
    return sum(count_tokens(part_text(part)) for part in message.parts)


def history_tokens(messages: Iterable[ModelMessage], instructions: str | None = None) -> int:
    """The estimate for a request carrying `messages` under `instructions`."""
    return count_tokens(instructions or "") + sum(message_tokens(message) for message in messages)
