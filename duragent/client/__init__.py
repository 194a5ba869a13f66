"""Clients of Duragent's HTTP API: the async HTTP client, SSE parsing, the server launcher.

The terminal commands (`duragent chat`, `attach`, `send`) are built on these; scripts can use
them too:

    async with ApiClient(url, token=api_token(config)) as api:
        session = await api.create_session("assistant")
        async for event in api.stream(session["session_id"], "hello"):
            ...
"""
