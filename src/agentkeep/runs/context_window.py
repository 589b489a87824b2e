"""Context trimming: keep a thread's history within the agent's `max_context_tokens`.

A pydantic-ai history processor, run before every model request of a turn. When the
request would carry more than `max_context_tokens` (estimated, see `runs.tokens`), whole
turns are dropped from the oldest until it fits. A turn starts at a request carrying a user
prompt and runs to the next one, so a tool call always goes, or stays, with its result. The
agent's system prompt travels as pydantic-ai instructions, outside the history, and is
always sent; a system prompt part found in a dropped message is moved to the first kept
one. The current turn is never dropped: if it alone exceeds the limit, it is sent whole and
the event says it does not fit.

Each trimming emits a `context_trimmed` event with what was dropped. Only the request
sent is trimmed: the thread's stored history keeps every message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace

from pydantic_ai import RunContext
from pydantic_ai.messages import ModelMessage, ModelRequest, SystemPromptPart, UserPromptPart

from agentkeep.runs.agent_tools import RunDeps
from agentkeep.runs.states import EventKind
from agentkeep.runs.tokens import count_tokens, history_tokens, part_text

HistoryTrimmer = Callable[[RunContext[RunDeps], list[ModelMessage]], Awaitable[list[ModelMessage]]]


def turn_starts(messages: list[ModelMessage]) -> list[int]:
    """Indexes of the requests that open a turn (those carrying a user prompt)."""
    return [
        index
        for index, message in enumerate(messages)
        if isinstance(message, ModelRequest) and any(isinstance(p, UserPromptPart) for p in message.parts)
    ]


def trim(
    messages: list[ModelMessage], max_tokens: int, instructions: str | None
) -> tuple[list[ModelMessage], int]:
    """The messages to send, and how many leading turns were dropped."""
    total = history_tokens(messages, instructions)
    starts = turn_starts(messages)
    if total <= max_tokens or len(starts) < 2:
        return messages, 0
    # Boundaries after which history may be cut: every turn start but the first (what comes
    # before the first start belongs to the first turn), the current turn's included.
    cut, dropped_turns = 0, 0
    for boundary in starts[1:]:
        total -= sum(_dropped_tokens(message) for message in messages[cut:boundary])
        cut, dropped_turns = boundary, dropped_turns + 1
        if total <= max_tokens:
            break
    return _keep_system_prompt(messages[:cut], messages[cut:]), dropped_turns


def _dropped_tokens(message: ModelMessage) -> int:
    """What dropping `message` saves: its system prompt parts move on to the first kept one."""
    return sum(
        count_tokens(part_text(part)) for part in message.parts if not isinstance(part, SystemPromptPart)
    )


def _keep_system_prompt(dropped: list[ModelMessage], kept: list[ModelMessage]) -> list[ModelMessage]:
    system = [
        part
        for message in dropped
        if isinstance(message, ModelRequest)
        for part in message.parts
        if isinstance(part, SystemPromptPart)
    ]
    if not system or not kept or not isinstance(kept[0], ModelRequest):
        return kept
    first = kept[0]
    return [replace(first, parts=[*system, *first.parts]), *kept[1:]]


def context_window(max_tokens: int, instructions: str | None) -> HistoryTrimmer:
    """The history processor for an agent with `max_context_tokens = max_tokens`."""

    async def trim_history(ctx: RunContext[RunDeps], messages: list[ModelMessage]) -> list[ModelMessage]:
        kept, dropped_turns = trim(messages, max_tokens, instructions)
        if dropped_turns:
            estimated = history_tokens(kept, instructions)
            await ctx.deps.emit(
                EventKind.CONTEXT_TRIMMED,
                {
                    "dropped_turns": dropped_turns,
                    "dropped_messages": len(messages) - len(kept),
                    "estimated_tokens_before": history_tokens(messages, instructions),
                    "estimated_tokens": estimated,
                    "max_context_tokens": max_tokens,
                    "fits": estimated <= max_tokens,
                },
            )
        return kept

    return trim_history
