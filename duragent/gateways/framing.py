"""Newline framing of protocol streams: whole lines out, oversized lines skipped, never fatal."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from duragent.gateways.protocol import MAX_LINE_BYTES

_CHUNK = 64 * 1024


async def iter_lines(
    reader: asyncio.StreamReader,
    *,
    on_oversize: Callable[[int], None],
    max_bytes: int = MAX_LINE_BYTES,
) -> AsyncIterator[bytes]:
    """Yield each non-blank line (without its newline) until EOF; report and skip oversized ones."""
    buffer = bytearray()
    skipping = False  # inside an oversized line: drop bytes until its newline
    while True:
        chunk = await reader.read(_CHUNK)
        if not chunk:
            if buffer.strip() and not skipping:
                yield bytes(buffer)
            return
        start = 0
        while True:
            newline = chunk.find(b"\n", start)
            if newline < 0:
                if not skipping:
                    buffer += chunk[start:]
                    if len(buffer) > max_bytes:
                        on_oversize(len(buffer))
                        buffer.clear()
                        skipping = True
                break
            if skipping:
                skipping = False
            else:
                buffer += chunk[start:newline]
                if len(buffer) > max_bytes:
                    on_oversize(len(buffer))
                elif buffer.strip():
                    yield bytes(buffer)
            buffer.clear()
            start = newline + 1
