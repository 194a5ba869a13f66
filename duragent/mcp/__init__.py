"""MCP client: servers an agent is configured with, their tools offered to the model.

`spec` is the configuration (`spec.mcp_servers` in agent.yaml, `mcp_servers` in duragent.yaml);
`connection` owns one server (start, restart with backoff, calls); `hub` holds every server of
a running process and hands the runtime an agent's tools; `tools` adapts an MCP tool to a
Duragent tool. Nothing here imports the SDK until a server is started.
"""
