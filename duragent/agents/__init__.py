"""Agent definitions: the agent.yaml model, loading folders into agents, and the catalog."""
