"""The built-in tools as data: name, description, settings model, argument model, `run`.

An agent's configuration names tools from `TOOL_REGISTRY`, each with settings validated by
that tool's `settings_model` (`ToolConfig` does both). At run time the agent loop
(`runs/agent_tools.py`) registers each configured tool with pydantic-ai as
`Tool.from_schema(..., json_schema=spec.args_model.model_json_schema())`, so `args_model`
is exactly what the model sees, and hands the raw arguments to `ToolSpec.call`, which
validates them. A `ToolError` from `run` is the tool's answer to the model, not a crash.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Self, TypeVar

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


class ToolConfig(BaseModel):
    """One tool enabled on an agent, with its settings (normalised and complete once valid)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, json_schema_extra={"enum": list(TOOL_NAMES)})
    settings: dict[str, Any] = Field(default_factory=dict, max_length=32)

    @field_validator("name")
    @classmethod
    def _known_tool(cls, name: str) -> str:
        if name not in TOOL_REGISTRY:
            raise PydanticCustomError(
                "unknown_tool",
                "unknown tool '{name}'; allowed values: {allowed}",
                {"name": name, "allowed": ", ".join(TOOL_NAMES)},
            )
        return name

    @model_validator(mode="after")
    def _valid_settings(self) -> Self:
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

    def parsed_settings(self) -> BaseModel:
        """The settings as the tool's own settings model."""
        settings: BaseModel = get_tool(self.name).parse_settings(self.settings)
        return settings
