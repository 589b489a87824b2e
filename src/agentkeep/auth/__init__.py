"""Authentication: registration, login, rotating refresh tokens, logout, the current principal."""
