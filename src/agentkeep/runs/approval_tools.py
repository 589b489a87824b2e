"""Which tool calls of a run wait for a person: the agent's toolsets wrapped in pydantic-ai's
`ApprovalRequiredToolset`, and what a run that stops on `DeferredToolRequests` hands over.

Built-in tools whose policy is `always` and MCP tools whose policy is `always` raise
pydantic-ai's `ApprovalRequired` when called without an approval; pydantic-ai then ends the
run with `DeferredToolRequests` as its output (the agent's output type is
`[str, DeferredToolRequests]`) after running the calls of the same response that need none.
A resumed run passes the decisions as `deferred_tool_results`, and approved calls run
(`ctx.tool_call_approved`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import JsonValue
from pydantic_ai.messages import ToolCallPart
from pydantic_ai.tools import DeferredToolRequests
from pydantic_ai.toolsets import AbstractToolset
from pydantic_ai.toolsets.approval_required import ApprovalRequiredToolset

from agentkeep.approvals.pause import PendingCall
from agentkeep.mcp.connect import McpEgress
from agentkeep.mcp.run_tools import McpRunServer, McpServerToolset
from agentkeep.tools.registry import ToolConfig

MAX_ARG_CHARS = 300


def needing_approval(toolset: AbstractToolset[Any], names: Iterable[str]) -> AbstractToolset[Any]:
    """`toolset`, its tools called `names` (as the model sees them) needing approval."""
    wanted = frozenset(names)
    if not wanted:
        return toolset
    return ApprovalRequiredToolset(
        toolset, approval_required_func=lambda _ctx, tool_def, _args: tool_def.name in wanted
    )


def builtin_approvals(configs: Iterable[ToolConfig]) -> frozenset[str]:
    return frozenset(config.name for config in configs if config.mcp is None and config.needs_approval)


def mcp_toolsets(servers: Sequence[McpRunServer], egress: McpEgress) -> list[AbstractToolset[Any]]:
    """One toolset per MCP server of the agent, its `always` tools needing approval."""
    return [
        needing_approval(
            McpServerToolset(server, egress),
            (tool.model_name for tool in server.tools if tool.needs_approval),
        )
        for server in servers
    ]


def agent_names(servers: Sequence[McpRunServer]) -> dict[str, str]:
    """Model-facing name -> the agent's name, for the MCP tools (built-in tools keep theirs)."""
    return {tool.model_name: tool.agent_name for server in servers for tool in server.tools}


def _args(part: ToolCallPart) -> JsonValue:
    try:
        args: JsonValue = part.args_as_dict()
    except ValueError:
        return {"raw": part.args_as_json_str()[:MAX_ARG_CHARS]}
    return args


def pending_calls(requests: DeferredToolRequests, names: Mapping[str, str]) -> list[PendingCall]:
    """The calls a person must decide, named as the agent names their tools."""
    return [
        PendingCall(part.tool_call_id, names.get(part.tool_name, part.tool_name), _args(part))
        for part in requests.approvals
    ]
