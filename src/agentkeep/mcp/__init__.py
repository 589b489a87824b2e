"""MCP tool servers per organization: Streamable HTTP (or SSE) endpoints whose request headers
(an Authorization token, say) are stored encrypted (SECRETS_ENCRYPTION_KEYS) and never shown,
reached only through the network guard, and whose tools are discovered and cached."""
