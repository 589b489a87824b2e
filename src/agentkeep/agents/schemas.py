"""Bodies of /api/agents. Strict (unknown fields refused), every string and list bounded, and
no value the database cannot store (NUL characters, lone surrogates) gets past them."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from agentkeep.agents.models import (
    AGENT_DESCRIPTION_MAX,
    AGENT_NAME_MAX,
    DEFAULT_APPROVAL_TIMEOUT_SECONDS,
    DEFAULT_APPROVERS,
    SYSTEM_PROMPT_MAX,
)
from agentkeep.pagination import DEFAULT_LIMIT, MAX_LIMIT, CursorParam, VersionCursorParam
from agentkeep.rbac.permissions import Role
from agentkeep.tools.registry import ToolConfig

TEST_MODEL = "test"
OPENAI_PREFIX = "openai:"
OPENAI_MODEL_MAX = 150
MODEL_PATTERN = re.compile(rf"openai:[A-Za-z0-9._:/-]{{1,{OPENAI_MODEL_MAX}}}")
MODEL_ALLOWED = (
    f"'{TEST_MODEL}' or '{OPENAI_PREFIX}<model>' (<model>: 1-{OPENAI_MODEL_MAX} of A-Z a-z 0-9 . _ : / -)"
)
MAX_TOOLS = 16

MAX_STEPS = (1, 50)
MAX_OUTPUT_TOKENS = (1, 100_000)
TIMEOUT_SECONDS = (1, 3600)
# Estimated tokens of history a thread turn sends (see runs.tokens); null: no trimming.
MAX_CONTEXT_TOKENS = (256, 2_000_000)
DEFAULT_MAX_STEPS = 10
DEFAULT_MAX_OUTPUT_TOKENS = 4096
DEFAULT_TIMEOUT_SECONDS = 120

AgentStatus = Literal["active", "disabled"]

# How long a run waits for the approval of a tool call before it ends `expired`.
APPROVAL_TIMEOUT_SECONDS = (10, 7 * 24 * 3600)


def storable(value: str) -> str:
    """Refuse what PostgreSQL cannot store in text or JSONB: NUL and lone surrogates."""
    if "\x00" in value:
        raise PydanticCustomError("nul_character", "must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise PydanticCustomError("invalid_unicode", "must be valid Unicode text") from None
    return value


def single_line(value: str) -> str:
    if not value.isprintable():
        raise PydanticCustomError("control_character", "must be one line without control characters")
    return value


def _model(value: str) -> str:
    if value != TEST_MODEL and MODEL_PATTERN.fullmatch(value) is None:
        raise PydanticCustomError("invalid_model", "model must be {allowed}", {"allowed": MODEL_ALLOWED})
    return value


def storable_json(value: Any) -> None:
    if isinstance(value, str):
        storable(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            storable_json(key)
            storable_json(item)
    elif isinstance(value, list):
        for item in value:
            storable_json(item)


# `format: printable-line` names the rule JSON Schema cannot state without Unicode property
# classes: printable characters only (no category C* or Z* other than the ASCII space),
# surrounding whitespace trimmed, not blank.
AgentName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=AGENT_NAME_MAX),
    Field(json_schema_extra={"format": "printable-line"}),
    AfterValidator(storable),
    AfterValidator(single_line),
]
Description = Annotated[str, Field(max_length=AGENT_DESCRIPTION_MAX), AfterValidator(storable)]
SystemPrompt = Annotated[str, Field(max_length=SYSTEM_PROMPT_MAX), AfterValidator(storable)]
ModelName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=len(OPENAI_PREFIX) + OPENAI_MODEL_MAX,
        # Documented, not enforced by pydantic: _model explains a mismatch in its own words.
        json_schema_extra={"pattern": rf"^({TEST_MODEL}|{MODEL_PATTERN.pattern})$"},
    ),
    AfterValidator(_model),
]


def _tools(tools: list[ToolConfig]) -> list[ToolConfig]:
    names = [tool.name for tool in tools]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise PydanticCustomError(
            "duplicate_tool", "each tool may appear once; repeated: {names}", {"names": ", ".join(duplicates)}
        )
    for tool in tools:
        storable_json(tool.settings)
    return tools


Tools = Annotated[list[ToolConfig], Field(max_length=MAX_TOOLS), AfterValidator(_tools)]


def _approvers(roles: list[Role]) -> list[Role]:
    if len(set(roles)) != len(roles):
        raise PydanticCustomError("duplicate_role", "each role may appear once")
    return roles


Approvers = Annotated[
    list[Role],
    Field(
        min_length=1,
        max_length=len(Role),
        description=(
            "The roles whose members may approve or deny this agent's tool calls (API keys "
            "also need the `runs:approve` scope)."
        ),
    ),
    AfterValidator(_approvers),
]
ApprovalTimeout = Annotated[
    int,
    Field(
        ge=APPROVAL_TIMEOUT_SECONDS[0],
        le=APPROVAL_TIMEOUT_SECONDS[1],
        strict=True,
        description="Seconds a run waits for approval of a tool call before it ends `expired`.",
    ),
]


class AgentLimits(BaseModel):
    """What one run of the agent may use. Out-of-range values are refused, not clamped."""

    model_config = ConfigDict(extra="forbid")

    max_steps: int = Field(default=DEFAULT_MAX_STEPS, ge=MAX_STEPS[0], le=MAX_STEPS[1], strict=True)
    max_output_tokens: int = Field(
        default=DEFAULT_MAX_OUTPUT_TOKENS, ge=MAX_OUTPUT_TOKENS[0], le=MAX_OUTPUT_TOKENS[1], strict=True
    )
    timeout_seconds: int = Field(
        default=DEFAULT_TIMEOUT_SECONDS, ge=TIMEOUT_SECONDS[0], le=TIMEOUT_SECONDS[1], strict=True
    )
    max_context_tokens: int | None = Field(
        default=None,
        ge=MAX_CONTEXT_TOKENS[0],
        le=MAX_CONTEXT_TOKENS[1],
        strict=True,
        description=(
            "In threads, the history sent with a turn is trimmed to this many estimated tokens "
            "(oldest turns first); null sends the whole history."
        ),
    )


class AgentLimitsPatch(BaseModel):
    """Limits to change; the ones left out keep their current values."""

    model_config = ConfigDict(extra="forbid")

    max_steps: int | None = Field(default=None, ge=MAX_STEPS[0], le=MAX_STEPS[1], strict=True)
    max_output_tokens: int | None = Field(
        default=None, ge=MAX_OUTPUT_TOKENS[0], le=MAX_OUTPUT_TOKENS[1], strict=True
    )
    timeout_seconds: int | None = Field(
        default=None, ge=TIMEOUT_SECONDS[0], le=TIMEOUT_SECONDS[1], strict=True
    )
    max_context_tokens: int | None = Field(
        default=None,
        ge=MAX_CONTEXT_TOKENS[0],
        le=MAX_CONTEXT_TOKENS[1],
        strict=True,
        description="null turns trimming off.",
    )

    @model_validator(mode="after")
    def _no_nulls(self) -> Self:
        refuse_explicit_nulls(self, nullable=NULLABLE_LIMITS)
        return self


class AgentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: AgentName = Field(description="Unique among the organization's agents.")
    description: Description = ""
    model: ModelName = Field(description=f"{MODEL_ALLOWED}.")
    system_prompt: SystemPrompt = ""
    tools: Tools = Field(default_factory=list)
    limits: AgentLimits = Field(default_factory=AgentLimits)
    status: AgentStatus = "active"
    approvers: Approvers = Field(default_factory=lambda: [Role(role) for role in DEFAULT_APPROVERS])
    approval_timeout_seconds: ApprovalTimeout = DEFAULT_APPROVAL_TIMEOUT_SECONDS


# Limits whose null is a value ("no limit"), so a PATCH may set them to null.
NULLABLE_LIMITS = frozenset({"max_context_tokens"})


def refuse_explicit_nulls(model: BaseModel, nullable: frozenset[str] = frozenset()) -> None:
    # Fields are optional in a PATCH, but none of them may be set to null: `null` would
    # mean "remove", and every field of an agent always has a value (but `nullable` ones).
    nulls = sorted(
        name for name in model.model_fields_set if getattr(model, name) is None and name not in nullable
    )
    if nulls:
        raise PydanticCustomError(
            "null_not_allowed",
            "may not be null: {fields} (leave a field out to keep it)",
            {"fields": ", ".join(nulls)},
        )


class AgentUpdate(BaseModel):
    """A partial change: fields left out keep their values; `limits` merges key by key."""

    model_config = ConfigDict(extra="forbid")

    name: AgentName | SkipJsonSchema[None] = None
    description: Description | SkipJsonSchema[None] = None
    model: ModelName | SkipJsonSchema[None] = None
    system_prompt: SystemPrompt | SkipJsonSchema[None] = None
    tools: Tools | SkipJsonSchema[None] = None
    limits: AgentLimitsPatch | SkipJsonSchema[None] = None
    status: AgentStatus | SkipJsonSchema[None] = None
    approvers: Approvers | SkipJsonSchema[None] = None
    approval_timeout_seconds: ApprovalTimeout | SkipJsonSchema[None] = None

    @model_validator(mode="after")
    def _no_nulls(self) -> Self:
        refuse_explicit_nulls(self)
        return self


class AgentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    org_id: uuid.UUID
    name: str
    description: str
    model: str
    system_prompt: str
    tools: list[dict[str, Any]]
    limits: dict[str, Any]
    status: str
    approvers: list[str]
    approval_timeout_seconds: int
    version: int
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class AgentPage(BaseModel):
    items: list[AgentRead]
    next_cursor: str | None


class AgentListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: CursorParam | None = None
    status: AgentStatus | None = None
    name: AgentName | None = Field(default=None, description="Exact name.")


class AgentVersionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    version: int
    config: dict[str, Any] = Field(description="The whole configuration of this version.")
    created_by: uuid.UUID | None
    created_at: datetime


class AgentVersionPage(BaseModel):
    items: list[AgentVersionRead]
    next_cursor: str | None


class AgentVersionListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: VersionCursorParam | None = None
