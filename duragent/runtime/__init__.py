"""The agent executor: context assembly, the agentic loop, tool policy and approvals.

Submodules are imported directly (`duragent.runtime.policy`, `duragent.runtime.approvals`) so that
importing the package stays cheap.
"""
