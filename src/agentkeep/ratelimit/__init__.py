"""Rate limits and brute-force protection over the `limits` library (Redis or memory)."""
