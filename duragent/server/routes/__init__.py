"""HTTP route modules: each maps a group of paths to plain `async def` handlers over the library."""
