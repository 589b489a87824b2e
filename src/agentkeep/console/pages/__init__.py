"""One router per console area (auth, agents, chat, runs): HTTP only, services do the work."""
