"""`notify_user`: a message to every client and gateway attached to the session."""

from __future__ import annotations

from pydantic import Field

from duragent.tools.base import Tool, ToolArgs, ToolContext, ToolResult


class NotifyArgs(ToolArgs):
    """Arguments of `notify_user`."""

    message: str = Field(min_length=1, description="What to tell the user.")


class NotifyUserTool(Tool[NotifyArgs]):
    """Send the user a message now, even in the middle of a long task."""

    name = "notify_user"
    description = (
        "Send the user a short message right away (progress, a question, a finished step), "
        "delivered to every client and chat attached to this session."
    )
    Args = NotifyArgs

    async def run(self, args: NotifyArgs, ctx: ToolContext) -> ToolResult:
        """Hand the message to ctx.notify."""
        if ctx.notify is None:
            return ToolResult(False, "no way to notify the user in this session")
        await ctx.notify(args.message)
        return ToolResult(True, "the user was notified")

    def invocation(self, args: NotifyArgs, ctx: ToolContext) -> str:
        """The message text."""
        return args.message
