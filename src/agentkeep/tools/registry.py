"""The built-in tools as data: name, description, settings model, argument model, `run`; and
how an agent names the tools it may use (`ToolConfig`): a built-in tool, or one tool of an
MCP server of its organization, `mcp:<server>/<tool>`.

An agent's configuration names tools from `TOOL_REGISTRY`, each with settings validated by
that tool's `settings_model` (`ToolConfig` does both). At run time the agent loop
(`runs/agent_tools.py`) registers each configured tool with pydantic-ai as
`Tool.from_schema(..., json_schema=spec.args_model.model_json_schema())`, so `args_model`
is exactly what the model sees, and hands the raw arguments to `ToolSpec.call`, which
validates them. A `ToolError` from `run` is the tool's answer to the model, not a crash.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, Self, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from agentkeep.tools import calculator, current_time, http_get
from agentkeep.tools.context import ToolContext
from agentkeep.tools.errors import ToolError, UnknownToolError

ArgsT = TypeVar("ArgsT", bound=BaseModel)
SettingsT = TypeVar("SettingsT", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class ToolSpec(Generic[ArgsT, SettingsT]):
    """One built-in tool."""

    name: str
    description: str
    settings_model: type[SettingsT]
    args_model: type[ArgsT]
    run: Callable[[ArgsT, SettingsT, ToolContext], Awaitable[JsonValue]]

    def parse_settings(self, raw: Mapping[str, Any] | None) -> SettingsT:
        """The agent's settings for this tool; raises pydantic's ValidationError when invalid."""
        return self.settings_model.model_validate(dict(raw or {}))

    async def call(self, raw_args: Mapping[str, Any], settings: SettingsT, context: ToolContext) -> JsonValue:
        """Validate the model's arguments and run the tool; bad arguments are a `ToolError`."""
        try:
            args = self.args_model.model_validate(dict(raw_args))
        except ValidationError as exc:
            raise ToolError(f"invalid arguments for {self.name}: {_problems(exc)}") from None
        return await self.run(args, settings, context)


def _spec(
    name: str,
    settings_model: type[SettingsT],
    args_model: type[ArgsT],
    run: Callable[[ArgsT, SettingsT, ToolContext], Awaitable[JsonValue]],
) -> ToolSpec[Any, Any]:
    # The argument model's docstring is the one-line description the model reads.
    description = (args_model.__doc__ or name).strip().splitlines()[0]
    return ToolSpec(name, description, settings_model, args_model, run)


TOOL_REGISTRY: Mapping[str, ToolSpec[Any, Any]] = {
    spec.name: spec
    for spec in (
        _spec("calculator", calculator.CalculatorSettings, calculator.CalculatorArgs, calculator.run),
        _spec(
            "current_time", current_time.CurrentTimeSettings, current_time.CurrentTimeArgs, current_time.run
        ),
        _spec("http_get", http_get.HttpGetSettings, http_get.HttpGetArgs, http_get.run),
    )
}
TOOL_NAMES: tuple[str, ...] = tuple(sorted(TOOL_REGISTRY))


def get_tool(name: str) -> ToolSpec[Any, Any]:
    """The tool called `name`; `UnknownToolError` (a ValueError) listing the allowed names."""
    try:
        return TOOL_REGISTRY[name]
    except KeyError:
        raise UnknownToolError(name, TOOL_NAMES) from None


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'value'}: {error['msg']}" for error in exc.errors()
    )


MCP_PREFIX = "mcp:"
# Server names as docs/mcp.md allows them; tool names as the MCP specification recommends
# (1-128 of A-Z a-z 0-9 _ - .).
MCP_SERVER_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}"
MCP_TOOL_PATTERN = r"[A-Za-z0-9_.-]{1,128}"
_MCP_NAME = re.compile(rf"mcp:(?P<server>{MCP_SERVER_PATTERN})/(?P<tool>{MCP_TOOL_PATTERN})")
TOOL_NAME_MAX = len(MCP_PREFIX) + 100 + 1 + 128
TOOL_NAME_PATTERN = "^(" + "|".join(TOOL_NAMES) + rf"|mcp:{MCP_SERVER_PATTERN}/{MCP_TOOL_PATTERN})$"

MODEL_TOOL_NAME_MAX = 64
_MODEL_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")

Approval = Literal["always", "never"]
# Built-in tools act inside the agent's own limits; an MCP tool acts on someone's service.
DEFAULT_APPROVAL: dict[bool, Approval] = {False: "never", True: "always"}


@dataclass(frozen=True, slots=True)
class McpToolName:
    """`mcp:<server>/<tool>`, parsed."""

    server: str
    tool: str

    @property
    def name(self) -> str:
        return f"{MCP_PREFIX}{self.server}/{self.tool}"

    @property
    def model_name(self) -> str:
        """The name the model calls it by. Providers accept `^[A-Za-z0-9_-]{1,64}$`: this is
        `mcp__<server>__<tool>`, with every other character replaced by `_`; when that changed
        the name or it is too long, cut and suffixed with a hash of the real name, so two tools
        never share one."""
        plain = f"mcp__{self.server}__{self.tool}"
        safe = _MODEL_UNSAFE.sub("_", plain)
        if safe == plain and len(safe) <= MODEL_TOOL_NAME_MAX:
            return safe
        digest = hashlib.sha256(self.name.encode()).hexdigest()[:10]
        return f"{safe[: MODEL_TOOL_NAME_MAX - len(digest) - 1]}_{digest}"


def parse_mcp_name(name: str) -> McpToolName | None:
    """The server and tool an `mcp:<server>/<tool>` name designates; None for any other name."""
    match = _MCP_NAME.fullmatch(name)
    return McpToolName(match["server"], match["tool"]) if match else None


class ToolConfig(BaseModel):
    """One tool enabled on an agent: a built-in tool with its settings (normalised and complete
    once valid), or an MCP server's tool (no settings), each with its approval policy."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        min_length=1,
        max_length=TOOL_NAME_MAX,
        description=f"A built-in tool ({', '.join(TOOL_NAMES)}) or `mcp:<server>/<tool>`.",
        json_schema_extra={"pattern": TOOL_NAME_PATTERN},
    )
    settings: dict[str, Any] = Field(default_factory=dict, max_length=32)
    approval: Approval | None = Field(
        default=None,
        description=(
            "`always`: every call waits for a person's approval; `never`: calls run at once. "
            "Default `never` for built-in tools, `always` for MCP tools."
        ),
    )

    @field_validator("name")
    @classmethod
    def _known_tool(cls, name: str) -> str:
        if name not in TOOL_REGISTRY and parse_mcp_name(name) is None:
            raise PydanticCustomError(
                "unknown_tool",
                "unknown tool '{name}'; allowed values: {allowed}, or mcp:<server>/<tool>",
                {"name": name, "allowed": ", ".join(TOOL_NAMES)},
            )
        return name

    @model_validator(mode="after")
    def _valid_settings(self) -> Self:
        if self.approval is None:
            self.approval = DEFAULT_APPROVAL[self.mcp is not None]
        if self.mcp is not None:
            if self.settings:
                raise PydanticCustomError(
                    "invalid_tool_settings",
                    "MCP tools take no settings ('{name}')",
                    {"name": self.name},
                )
            return self
        spec = TOOL_REGISTRY[self.name]
        try:
            parsed = spec.parse_settings(self.settings)
        except ValidationError as exc:
            raise PydanticCustomError(
                "invalid_tool_settings",
                "invalid settings for tool '{name}': {problems}",
                {"name": self.name, "problems": _problems(exc)},
            ) from None
        self.settings = parsed.model_dump(mode="json")
        return self

    @property
    def mcp(self) -> McpToolName | None:
        """The MCP server and tool, for an `mcp:` tool."""
        return parse_mcp_name(self.name)

    @property
    def needs_approval(self) -> bool:
        return self.approval == "always"

    def parsed_settings(self) -> BaseModel:
        """The settings as the built-in tool's own settings model."""
        settings: BaseModel = get_tool(self.name).parse_settings(self.settings)
        return settings
