"""A thread's model-level history: pydantic-ai messages, stored one row each.

Messages are stored and read with pydantic-ai's own serializer (`ModelMessagesTypeAdapter`),
so the next turn sends the model exactly what it would have seen in one long run. Only the
runner that holds a turn's lease writes its messages, once, in the transaction that
records the turn's outcome: an attempt that dies writes nothing and the retry writes the
turn whole, so the history gets each message exactly once.

pydantic-ai's `ConversationStore` was considered and not used: its entries form a tree with
branches, forks and a revision token for concurrent writers, while a thread is one line
whose writes are already serialised by the turn order and fenced on the run lease, and whose
rows must carry the run they came from (the messages list names it, deletion follows it).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from pydantic_ai.messages import (
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelRequest,
    ModelResponse,
    ToolCallPart,
    ToolReturnPart,
)
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from agentkeep.threads.models import ThreadMessage


def dump_message(message: ModelMessage) -> dict[str, object]:
    dumped = ModelMessagesTypeAdapter.dump_python([message], mode="json")
    document: dict[str, object] = dumped[0]
    return document


def load_messages(documents: Sequence[dict[str, object]]) -> list[ModelMessage]:
    return ModelMessagesTypeAdapter.validate_python(list(documents))


def complete(messages: Sequence[ModelMessage]) -> list[ModelMessage]:
    """`messages` without a trailing response whose tool calls never got their results.

    A turn that was cancelled or failed between a model's tool calls and their results
    leaves such a response; sent again, providers refuse a tool call without its result (and
    pydantic-ai would run the calls again). Everything before it is kept.
    """
    kept = list(messages)
    while kept and isinstance(kept[-1], ModelResponse) and _calls(kept[-1]):
        kept.pop()
    return kept


def _calls(response: ModelResponse) -> bool:
    return any(isinstance(part, ToolCallPart) for part in response.parts)


def returned_call_ids(message: ModelMessage) -> set[str]:
    if not isinstance(message, ModelRequest):
        return set()
    return {part.tool_call_id for part in message.parts if isinstance(part, ToolReturnPart)}


class ThreadHistory:
    """Reads and appends one thread's messages within the caller's transaction."""

    def __init__(self, session: AsyncSession, thread_id: uuid.UUID) -> None:
        self.session = session
        self.thread_id = thread_id

    async def load(self) -> list[ModelMessage]:
        """Every message of the thread, oldest first, as pydantic-ai message objects."""
        statement = (
            select(ThreadMessage.message)
            .where(ThreadMessage.thread_id == self.thread_id)
            .order_by(ThreadMessage.seq)
        )
        return load_messages(list((await self.session.scalars(statement)).all()))

    async def append(self, run_id: uuid.UUID, messages: Sequence[ModelMessage], now: datetime) -> int:
        """Append a turn's messages after the thread's last; returns how many were written."""
        if not messages:
            return 0
        last = await self.session.scalar(
            select(func.coalesce(func.max(ThreadMessage.seq), 0)).where(
                ThreadMessage.thread_id == self.thread_id
            )
        )
        seq = int(last or 0)
        for message in messages:
            seq += 1
            self.session.add(
                ThreadMessage(
                    thread_id=self.thread_id,
                    seq=seq,
                    run_id=run_id,
                    kind=message.kind,
                    message=dump_message(message),
                    created_at=now,
                )
            )
        await self.session.flush()
        return len(messages)
