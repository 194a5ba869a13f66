"""Tools an agent can call: the builtins, command-line tools from agent.yaml, and their registry.

`duragent.tools.base` defines what a tool is; `duragent.tools.registry` finds tools by name and
runs them. Submodules are imported directly so that importing the package stays cheap.
"""
