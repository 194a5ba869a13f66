"""Platform gateways: the plugin protocol and SDK, the subprocess manager, the router."""
