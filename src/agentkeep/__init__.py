"""AgentKeep: a secure, self-hostable control plane for AI agents."""

__version__ = "0.1.0"
