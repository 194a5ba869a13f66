"""A platform fake run by hand (`python -m duragent.testing.fake_... --user ID`) with pipes: type
lines into its console and wait for what it prints (shared by the fakes' console tests)."""

from __future__ import annotations

import asyncio
import sys


class ConsoleProcess:
    """`python -m <module> <args>` with its stdin and stdout piped."""

    def __init__(self, process: asyncio.subprocess.Process):
        self.process = process
        #: Every line it printed so far.
        self.printed: list[str] = []

    @classmethod
    async def start(cls, module: str, *args: str) -> ConsoleProcess:
        """Run the module (`--port 0` is up to the caller)."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def type(self, line: str) -> None:
        """Type one line, as a person at the console would."""
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        await self.process.stdin.drain()

    async def printed_line(self, containing: str, within: float = 30.0) -> str:
        """The first line printed (already or next) that contains `containing`."""
        assert self.process.stdout is not None
        async with asyncio.timeout(within):
            while not any(containing in line for line in self.printed):
                line = await self.process.stdout.readline()
                if not line:
                    raise EOFError(f"the console exited; it printed:\n{''.join(self.printed)}")
                self.printed.append(line.decode(errors="replace"))
        return next(line for line in self.printed if containing in line)

    async def stop(self) -> int:
        """Interrupt it (SIGTERM, as Ctrl-C would) and return its exit code."""
        if self.process.returncode is None:
            self.process.terminate()
        return await self.process.wait()
