"""Fakes of Duragent's peers (LLM servers, chat platforms) for tests, ours and plugin authors'."""
