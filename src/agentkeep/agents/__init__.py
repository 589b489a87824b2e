"""Agents: versioned configurations (model, system prompt, tools, limits) in an organization."""
