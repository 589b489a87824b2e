"""The tamper-evident audit log: record(...), the hash chain, verify, query and export."""
