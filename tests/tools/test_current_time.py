"""current_time: UTC, a named IANA zone, the agent's default zone, and unknown zones."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from agentkeep.tools import ToolContext, ToolError, get_tool
from agentkeep.tools.current_time import CurrentTimeSettings

FIXED = datetime(2026, 7, 1, 12, 30, 15, tzinfo=UTC)
FROZEN = ToolContext(clock=lambda: FIXED)


async def current_time(ctx: ToolContext = FROZEN, settings: dict[str, Any] | None = None, **args: Any) -> Any:
    spec = get_tool("current_time")
    return await spec.call(args, spec.parse_settings(settings), ctx)


async def test_utc_by_default() -> None:
    assert await current_time() == {"timezone": "UTC", "iso": "2026-07-01T12:30:15+00:00"}


@pytest.mark.parametrize(
    ("zone", "iso"),
    [
        ("Europe/Paris", "2026-07-01T14:30:15+02:00"),
        ("America/New_York", "2026-07-01T08:30:15-04:00"),
        ("Asia/Kolkata", "2026-07-01T18:00:15+05:30"),
        ("utc", "2026-07-01T12:30:15+00:00"),
    ],
)
async def test_named_zone(zone: str, iso: str) -> None:
    result = await current_time(timezone=zone)
    assert result["iso"] == iso


async def test_agent_default_zone_applies_when_the_model_names_none() -> None:
    result = await current_time(settings={"default_timezone": "Asia/Tokyo"})
    assert result == {"timezone": "Asia/Tokyo", "iso": "2026-07-01T21:30:15+09:00"}


@pytest.mark.parametrize(
    "zone", ["Mars/Olympus_Mons", "Europe", "../../etc/passwd", "/etc/localtime", "Europe/Paris\x00"]
)
async def test_unknown_zone_is_a_tool_error(zone: str) -> None:
    with pytest.raises(ToolError, match="unknown time zone"):
        await current_time(timezone=zone)


def test_unknown_default_zone_is_refused_in_settings() -> None:
    with pytest.raises(ValidationError, match="unknown time zone"):
        CurrentTimeSettings.model_validate({"default_timezone": "Nowhere/Special"})
    with pytest.raises(ValidationError):
        CurrentTimeSettings.model_validate({"default_timezone": "UTC", "extra": 1})


async def test_real_clock_is_close_to_now() -> None:
    result = await current_time(ToolContext())
    moment = datetime.fromisoformat(result["iso"])
    assert abs((moment - datetime.now(UTC)).total_seconds()) < 60
