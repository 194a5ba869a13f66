"""Duragent: a durable, self-hosted runtime for AI agents whose state is files in git."""

__version__ = "0.1.0"
