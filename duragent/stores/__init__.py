"""The three state interfaces (sessions, memory, artifacts) and their backends."""
