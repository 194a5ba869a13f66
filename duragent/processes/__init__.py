"""Background processes: spawned by an agent, watched by the server, reported back to its session."""
