"""Markdown (as agents write it) -> Slack's `mrkdwn`.

Parsed with markdown-it-py (CommonMark + tables + strikethrough) and rendered from the syntax
tree: bold `*x*`, italics `_x_`, strikethrough `~x~`, inline code, code blocks in triple
backticks (Slack shows no language), links `<url|text>`, quotes `> `, "• " bullets and numbered
lists (indented when nested), headings as bold lines, tables as a padded text table in a code
block, rules as a line. `&`, `<` and `>` in text are escaped as Slack requires, so a user's
`<!channel>` typed into a reply never pings anyone.
"""

from __future__ import annotations

import re
from functools import cache

from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode

_SAFE_LINK = re.compile(r"^(https?|mailto):", re.IGNORECASE)
RULE = "──────────"


@cache
def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark").enable(["table", "strikethrough"])


def markdown_to_mrkdwn(markdown: str) -> str:
    """Slack mrkdwn for `markdown`; empty Markdown gives ""."""
    tree = SyntaxTreeNode(_parser().parse(markdown))
    return _blocks(tree.children).strip()


def escape(text: str) -> str:
    """Text with the three characters Slack treats as markup escaped."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _blocks(nodes: list[SyntaxTreeNode], separator: str = "\n\n") -> str:
    return separator.join(part for node in nodes if (part := _block(node)))


def _block(node: SyntaxTreeNode) -> str:
    kind = node.type
    if kind == "paragraph":
        return _inline_of(node)
    if kind == "heading":
        return f"*{_inline_of(node)}*"
    if kind in ("bullet_list", "ordered_list"):
        return _list(node)
    if kind == "blockquote":
        inner = _blocks(node.children, separator="\n")
        return "\n".join(f"> {line}" if line else ">" for line in inner.split("\n"))
    if kind in ("fence", "code_block"):
        return f"```\n{escape(node.content.rstrip(chr(10)))}\n```"
    if kind == "hr":
        return RULE
    if kind == "table":
        return _table(node)
    if kind == "html_block":
        return escape(node.content.rstrip("\n"))
    return _blocks(node.children)


def _list(node: SyntaxTreeNode) -> str:
    start = int(node.attrs.get("start", 1)) if node.type == "ordered_list" else 1
    items = []
    for number, item in enumerate(node.children, start=start):
        marker = f"{number}. " if node.type == "ordered_list" else "• "
        tight = all(child.type != "paragraph" or child.hidden for child in item.children)
        lines = _blocks(item.children, separator="\n" if tight else "\n\n").split("\n")
        indent = " " * len(marker)
        items.append("\n".join([marker + lines[0], *(indent + line if line else line for line in lines[1:])]))
    return "\n".join(items)


def _table(node: SyntaxTreeNode) -> str:
    rows = [
        [_plain(cell) for cell in row.children]
        for section in node.children
        for row in section.children
        if row.type == "tr"
    ]
    if not rows:
        return ""
    columns = max(len(row) for row in rows)
    rows = [row + [""] * (columns - len(row)) for row in rows]
    widths = [max(len(row[index]) for row in rows) for index in range(columns)]

    def line(cells: list[str]) -> str:
        return " | ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()

    separator = "-+-".join("-" * width for width in widths)
    text = "\n".join([line(rows[0]), separator, *(line(row) for row in rows[1:])])
    return f"```\n{escape(text)}\n```"


def _inline_of(node: SyntaxTreeNode) -> str:
    return "".join(_inline(child) for child in node.children)


def _inline(node: SyntaxTreeNode) -> str:
    kind = node.type
    if kind == "inline":
        return _inline_of(node)
    if kind in ("text", "html_inline"):
        return escape(node.content)
    if kind in ("softbreak", "hardbreak"):
        return "\n"
    if kind == "code_inline":
        return f"`{escape(node.content)}`"
    marks = {"strong": "*", "em": "_", "s": "~"}
    if kind in marks:
        return f"{marks[kind]}{_inline_of(node)}{marks[kind]}"
    if kind == "link":
        href = str(node.attrs.get("href", ""))
        text = _inline_of(node)
        return f"<{href}|{text}>" if _SAFE_LINK.match(href) and "|" not in href else text
    if kind == "image":
        src = str(node.attrs.get("src", ""))
        alt = escape(_plain(node)) or "image"
        return f"<{src}|{alt}>" if _SAFE_LINK.match(src) and "|" not in src else alt
    return _inline_of(node)


def _plain(node: SyntaxTreeNode) -> str:
    """The visible text of an inline subtree, without markup (for table cells and alt texts)."""
    if node.type in ("text", "code_inline", "html_inline"):
        return node.content
    if node.type in ("softbreak", "hardbreak"):
        return " "
    return "".join(_plain(child) for child in node.children)
