"""What the chat plugins' Markdown renderers share: the parser and the platform-neutral layouts.

Agents write CommonMark (+ tables, strikethrough); each platform renders the syntax tree its own
way (Telegram HTML, Slack mrkdwn, Discord Markdown). What is the same everywhere lives here:
parsing, list items with their continuation lines indented under the marker, tables as a padded
text table, and the visible text of an inline subtree.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from markdown_it import MarkdownIt
from markdown_it.token import Token
from markdown_it.tree import SyntaxTreeNode

#: A thematic break (`---`), as a line every platform shows.
RULE = "──────────"


@cache
def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark").enable(["table", "strikethrough"])


def parse(markdown: str) -> SyntaxTreeNode:
    """The syntax tree of `markdown` (CommonMark with tables and strikethrough)."""
    return SyntaxTreeNode(parse_tokens(markdown))


def parse_tokens(markdown: str) -> list[Token]:
    """`markdown`'s token stream, each block token with its source `map` (line range)."""
    return _parser().parse(markdown)


def list_layout(node: SyntaxTreeNode, render_item: Callable[[list[SyntaxTreeNode], str], str]) -> str:
    """A bullet or ordered list as text: "• " or "N. " markers, continuation lines indented.

    `render_item(children, separator)` renders one item's blocks, joined by `separator` ("\\n"
    in a tight list, a blank line in a loose one).
    """
    start = int(node.attrs.get("start", 1)) if node.type == "ordered_list" else 1
    items = []
    for number, item in enumerate(node.children, start=start):
        marker = f"{number}. " if node.type == "ordered_list" else "• "
        tight = all(child.type != "paragraph" or child.hidden for child in item.children)
        # Continuation lines (and nested lists) are indented under the item's text.
        lines = render_item(item.children, "\n" if tight else "\n\n").split("\n")
        indent = " " * len(marker)
        items.append("\n".join([marker + lines[0], *(indent + line if line else line for line in lines[1:])]))
    return "\n".join(items)


def table_rows(node: SyntaxTreeNode) -> list[list[str]]:
    """A table node's cells as plain text, header row first."""
    return [
        [plain_text(cell) for cell in row.children]
        for section in node.children
        for row in section.children
        if row.type == "tr"
    ]


def text_table(rows: list[list[str]]) -> list[str]:
    """Rows as the lines of a padded text table (`a | b`, then `--+--`); no rows give none."""
    if not rows:
        return []
    columns = max(len(row) for row in rows)
    rows = [row + [""] * (columns - len(row)) for row in rows]
    widths = [max(len(row[index]) for row in rows) for index in range(columns)]

    def line(cells: list[str]) -> str:
        return " | ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()

    separator = "-+-".join("-" * width for width in widths)
    return [line(rows[0]), separator, *(line(row) for row in rows[1:])]


def plain_text(node: SyntaxTreeNode) -> str:
    """The visible text of an inline subtree, without markup (for table cells and alt texts)."""
    if node.type in ("text", "code_inline", "html_inline"):
        return node.content
    if node.type in ("softbreak", "hardbreak"):
        return " "
    return "".join(plain_text(child) for child in node.children)
