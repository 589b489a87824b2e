"""Runs: an agent version executed on one input, with its events, usage and lifecycle."""
