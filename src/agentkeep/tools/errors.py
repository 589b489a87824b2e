"""Errors of the built-in tools.

A `ToolError` is an expected failure the model should read as the tool's result ("refused:
10.0.0.1 is a private address", "division by zero"): the agent loop catches it and hands the
message back to the model. Any other exception escaping a tool is a bug and fails the run.
"""

from __future__ import annotations

from collections.abc import Sequence


class ToolError(Exception):
    """A failure reported to the model as the tool's result, never an internal bug."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class UnknownToolError(ValueError):
    """A tool name that is not in the registry; carries the allowed names."""

    def __init__(self, name: str, allowed: Sequence[str]) -> None:
        self.name = name
        self.allowed = tuple(allowed)
        super().__init__(f"unknown tool {name!r}; allowed values: {', '.join(self.allowed)}")
