"""Idempotency keys: a retried create returns what the first attempt created."""
