"""Filesystem backends: sessions, memory and artifacts as plain files under the data directory."""
