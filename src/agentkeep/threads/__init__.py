"""Threads: multi-turn conversations with an agent."""
