"""Gateway plugins that ship with Duragent: separate processes speaking the gateway protocol."""
