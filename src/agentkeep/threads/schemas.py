"""Bodies of /api/threads. Strict (unknown fields refused), every value bounded, and nothing
the database cannot store gets past them."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from agentkeep.agents.schemas import refuse_explicit_nulls, single_line, storable, storable_json
from agentkeep.pagination import CURSOR_MAX_LENGTH, DEFAULT_LIMIT, MAX_LIMIT, CursorParam
from agentkeep.runs.models import RUN_INPUT_MAX
from agentkeep.threads.models import THREAD_METADATA_MAX_BYTES, THREAD_TITLE_MAX

METADATA_MAX_KEYS = 64
METADATA_KEY_MAX = 64


def _metadata(value: dict[str, Any]) -> dict[str, Any]:
    storable_json(value)
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    if size > THREAD_METADATA_MAX_BYTES:
        raise PydanticCustomError(
            "metadata_too_large",
            "metadata must be at most {limit} bytes of JSON; this is {size}",
            {"limit": THREAD_METADATA_MAX_BYTES, "size": size},
        )
    return value


# Surrounding whitespace trimmed; one printable line; may be empty (an untitled thread).
Title = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=THREAD_TITLE_MAX),
    Field(json_schema_extra={"format": "printable-line"}),
    AfterValidator(storable),
    AfterValidator(single_line),
]
Metadata = Annotated[
    dict[Annotated[str, StringConstraints(min_length=1, max_length=METADATA_KEY_MAX)], Any],
    Field(
        max_length=METADATA_MAX_KEYS,
        description=(
            f"Free-form JSON object for the client's own use: at most {METADATA_MAX_KEYS} keys of "
            f"1-{METADATA_KEY_MAX} characters, {THREAD_METADATA_MAX_BYTES} bytes serialized."
        ),
    ),
    AfterValidator(_metadata),
]


class ThreadCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent_id: uuid.UUID = Field(description="A live agent of the organization.")
    agent_version: int | None = Field(
        default=None,
        ge=1,
        le=2**31 - 1,
        strict=True,
        description="Pin this version of the agent; left out, every turn uses its current version.",
    )
    title: Title = ""
    metadata: Metadata = Field(default_factory=dict)


class ThreadUpdate(BaseModel):
    """A partial change: fields left out keep their values; `metadata` is replaced whole."""

    model_config = ConfigDict(extra="forbid")

    title: Title | SkipJsonSchema[None] = None
    metadata: Metadata | SkipJsonSchema[None] = None

    @model_validator(mode="after")
    def _no_nulls(self) -> Self:
        refuse_explicit_nulls(self)
        return self


class ThreadRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    org_id: uuid.UUID
    agent_id: uuid.UUID
    agent_version: int | None = Field(description="The pinned version; null: the agent's current one.")
    title: str
    # The model attribute is `metadata_` (`metadata` is SQLAlchemy's own).
    metadata: dict[str, Any] = Field(validation_alias="metadata_")
    created_by_user_id: uuid.UUID
    created_by_api_key_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    last_activity_at: datetime


class ThreadPage(BaseModel):
    items: list[ThreadRead]
    next_cursor: str | None


class ThreadListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: CursorParam | None = None
    agent_id: uuid.UUID | None = Field(default=None, description="Only this agent's threads.")
    created_by: uuid.UUID | None = Field(default=None, description="Only threads this user started.")


class Multitask(StrEnum):
    """What a new turn does while another turn of the thread is queued or running."""

    REJECT = "reject"  # 409 thread-busy
    ENQUEUE = "enqueue"  # wait, then run after the turns before it, in order
    INTERRUPT = "interrupt"  # cancel the unfinished turns (they keep what they said), then run


class TurnCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: Annotated[
        str,
        Field(min_length=1, max_length=RUN_INPUT_MAX, description="What the user says this turn."),
        AfterValidator(storable),
    ]
    multitask: Multitask = Field(
        default=Multitask.REJECT,
        description=(
            "While another turn of the thread is queued or running: `reject` answers 409, "
            "`enqueue` runs this turn after it, `interrupt` cancels it and runs this one."
        ),
    )


class ToolCallRead(BaseModel):
    id: str
    name: str
    args: Any = Field(description="The arguments as the model sent them (an object, or the raw text).")


class ToolResultRead(BaseModel):
    tool_call_id: str
    name: str
    content: Any = Field(description="What the tool returned, or why it failed.")
    error: bool


class ThreadMessageRead(BaseModel):
    seq: int = Field(description="The message's position in the thread, from 1.")
    run_id: uuid.UUID = Field(description="The turn (run) the message belongs to.")
    role: Literal["user", "assistant", "tool"]
    content: str | None = Field(description="What the user said, or the assistant's text.")
    tool_calls: list[ToolCallRead]
    tool_results: list[ToolResultRead]
    created_at: datetime


class ThreadMessagePage(BaseModel):
    items: list[ThreadMessageRead]
    next_cursor: str | None


# A position among a thread's messages: only a `next_cursor` of that list is valid.
MessageCursorParam = Annotated[
    str,
    Field(
        max_length=CURSOR_MAX_LENGTH,
        json_schema_extra={"format": "message-cursor"},
        description="The `next_cursor` of the previous page of this list, unchanged.",
    ),
]


class MessageListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: MessageCursorParam | None = None
