"""Built-in agent tools: calculator, current_time, http_get, and the registry that lists them."""

from agentkeep.tools.context import ToolContext
from agentkeep.tools.errors import ToolError, UnknownToolError
from agentkeep.tools.registry import TOOL_NAMES, TOOL_REGISTRY, ToolConfig, ToolSpec, get_tool

__all__ = [
    "TOOL_NAMES",
    "TOOL_REGISTRY",
    "ToolConfig",
    "ToolContext",
    "ToolError",
    "ToolSpec",
    "UnknownToolError",
    "get_tool",
]
