"""The floor under a turn through `duragent serve`: the least a session server can do per turn.

`serve_turn.py --floor` runs this in the blocks of its servers, on the same workspace layout
and fake model: aiohttp in, aiohttp out, each session's history kept in memory and sent whole
each turn, the user message and the reply appended to a JSON-lines file and fsynced before the
reply. Each message is encoded once, when it is appended, as Duragent's providers do: a turn
encodes what is new and copies the history's text into the body. No agents, memory, policy,
tools, secret screening, auth, git or events. What it costs per turn is what aiohttp and two
fsyncs cost on this machine: the part of a turn's overhead no change to Duragent's own code
can remove.

    python bench/floor_server.py -c WORKSPACE/duragent.yaml serve --port N
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, web

HTTP = web.AppKey("http", ClientSession)


def main() -> None:
    config = Path(sys.argv[sys.argv.index("-c") + 1])
    port = int(sys.argv[sys.argv.index("--port") + 1])
    agent = (config.parent / ".duragent" / "agents" / "assistant" / "agent.yaml").read_text()
    found = re.search(r"base_url: (\S+)", agent)
    if found is None:
        raise SystemExit("the workspace's agent has no model.base_url")
    model_url = found.group(1) + "/chat/completions"
    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {os.environ.get('OPENAI_API_KEY', '')}",
    }
    compact = json.JSONEncoder(separators=(",", ":"))  # as Duragent's providers write bodies
    system = compact.encode({"role": "system", "content": "You are a helpful assistant."}).encode()
    # per session, the messages array's text without its brackets
    histories: dict[str, bytearray] = {}
    log_fd = os.open(config.parent / "floor-events.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def append(history: bytearray, message: dict[str, Any]) -> None:
        encoded = compact.encode(message).encode()
        history.extend(b"," + encoded)
        os.write(log_fd, encoded + b"\n")
        os.fsync(log_fd)

    async def ready(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def new_session(request: web.Request) -> web.Response:
        session_id = f"s_floor{len(histories)}"
        histories[session_id] = bytearray(system)
        return web.json_response({"session_id": session_id})

    async def message(request: web.Request) -> web.Response:
        history = histories[request.match_info["session_id"]]
        body = await request.json()
        append(history, {"role": "user", "content": body["content"]})
        payload = b"".join((b'{"model":"bench","messages":[', history, b'],"stream":true}'))
        text = []
        async with request.app[HTTP].post(model_url, data=payload, headers=headers) as response:
            async for line in response.content:
                if line.startswith(b"data: {"):
                    for choice in json.loads(line[6:]).get("choices", []):
                        text.append(choice.get("delta", {}).get("content") or "")
        reply = "".join(text)
        append(history, {"role": "assistant", "content": reply})
        return web.json_response({"content": reply})

    async def client(app: web.Application) -> Any:
        app[HTTP] = ClientSession()
        yield
        await app[HTTP].close()

    app = web.Application()
    app.cleanup_ctx.append(client)
    app.router.add_get("/readyz", ready)
    app.router.add_post("/api/v1/sessions", new_session)
    app.router.add_post("/api/v1/sessions/{session_id}/messages", message)
    web.run_app(app, host="127.0.0.1", port=port, print=None)


if __name__ == "__main__":
    main()
