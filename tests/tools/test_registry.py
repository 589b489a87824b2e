"""The tool registry: names, schemas for the model, per-agent settings validation."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from agentkeep.tools import TOOL_NAMES, TOOL_REGISTRY, ToolConfig, UnknownToolError, get_tool


def test_built_in_tools_are_registered_by_name() -> None:
    assert TOOL_NAMES == ("calculator", "current_time", "http_get")
    assert all(TOOL_REGISTRY[name].name == name for name in TOOL_NAMES)


def test_unknown_tool_error_lists_the_allowed_names() -> None:
    with pytest.raises(UnknownToolError) as caught:
        get_tool("shell")
    assert caught.value.allowed == TOOL_NAMES
    assert str(caught.value) == "unknown tool 'shell'; allowed values: calculator, current_time, http_get"
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("name", TOOL_NAMES)
def test_every_tool_has_a_one_line_description_and_strict_models(name: str) -> None:
    spec = get_tool(name)
    assert spec.description
    assert "\n" not in spec.description
    for model in (spec.args_model, spec.settings_model):
        assert issubclass(model, BaseModel)
        assert model.model_config.get("extra") == "forbid"
    schema = spec.args_model.model_json_schema()
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    spec.parse_settings(None)  # the defaults are a valid configuration


def test_tool_config_normalises_and_completes_settings() -> None:
    config = ToolConfig.model_validate(
        {"name": "http_get", "settings": {"allowed_hosts": ["Intranet.Local."]}}
    )
    assert config.settings["allowed_hosts"] == ["intranet.local"]
    assert config.settings["timeout_seconds"] == 10.0
    assert config.parsed_settings() == get_tool("http_get").parse_settings(config.settings)


def test_tool_config_unknown_name_is_a_validation_error_with_the_allowed_values() -> None:
    with pytest.raises(ValidationError) as caught:
        ToolConfig.model_validate({"name": "shell"})
    (error,) = caught.value.errors()
    assert error["type"] == "unknown_tool"
    assert error["loc"] == ("name",)
    assert error["ctx"] == {"name": "shell", "allowed": "calculator, current_time, http_get"}


@pytest.mark.parametrize(
    "raw",
    [
        {"name": "http_get", "settings": {"timeout_seconds": 600}},
        {"name": "calculator", "settings": {"precision": 5}},
        {"name": "current_time", "settings": {"default_timezone": "Nowhere/Else"}},
        {"name": "calculator", "settings": {}, "enabled": True},
    ],
)
def test_tool_config_bad_settings_are_refused(raw: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ToolConfig.model_validate(raw)
