"""`current_time`: the current date and time, in UTC or in an IANA time zone, as ISO 8601."""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator

from agentkeep.tools.context import ToolContext
from agentkeep.tools.errors import ToolError

# IANA names are ASCII letters, digits and _ + - /; the pattern also keeps paths like
# "../etc" out before zoneinfo sees them.
ZONE_PATTERN = r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*$"
ZONE_MAX_LENGTH = 64


def load_zone(name: str) -> ZoneInfo:
    """The zone named `name`, or a `ToolError` saying it is unknown."""
    if name.upper() == "UTC":
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ToolError(f"unknown time zone {name!r}; use an IANA name such as 'Europe/Paris'") from None


class CurrentTimeSettings(BaseModel):
    """Per-agent settings: the zone used when the model names none."""

    model_config = ConfigDict(extra="forbid")

    default_timezone: str = Field(default="UTC", max_length=ZONE_MAX_LENGTH, pattern=ZONE_PATTERN)

    @field_validator("default_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            load_zone(value)
        except ToolError as exc:
            raise ValueError(exc.message) from None
        return value


class CurrentTimeArgs(BaseModel):
    """Get the current date and time, optionally in an IANA time zone."""

    model_config = ConfigDict(extra="forbid")

    timezone: str | None = Field(
        default=None,
        max_length=ZONE_MAX_LENGTH,
        description="IANA time zone such as 'UTC' or 'Europe/Paris'; the agent's default if omitted.",
    )


async def run(args: CurrentTimeArgs, settings: CurrentTimeSettings, context: ToolContext) -> JsonValue:
    """Return the zone name and the current time in it, ISO 8601 with its UTC offset."""
    name = args.timezone or settings.default_timezone
    if len(name) > ZONE_MAX_LENGTH or re.fullmatch(ZONE_PATTERN, name) is None:
        raise ToolError(f"unknown time zone {name!r}; use an IANA name such as 'Europe/Paris'")
    zone = load_zone(name)
    now = context.clock().astimezone(zone)
    return {"timezone": zone.key, "iso": now.isoformat()}
