"""Model provider credentials per organization: OpenAI-compatible endpoints whose API keys
are stored encrypted (SECRETS_ENCRYPTION_KEYS) and never shown again after they are written."""
