"""Run dispatch: the queue adapter (in-process or procrastinate) and the worker command."""
