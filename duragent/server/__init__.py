"""`duragent serve`: the aiohttp application — REST, SSE, admin API — over the library."""
