"""Daily Markdown memory: parsing and rendering sections, searching entries."""
