"""Human approval of tool calls: a run pauses on the calls that need it, people decide."""
