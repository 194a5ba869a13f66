"""Markdown (as agents write it) -> Slack's `mrkdwn`.

Parsed with markdown-it-py (CommonMark + tables + strikethrough) and rendered from the syntax
tree: bold `*x*`, italics `_x_`, strikethrough `~x~`, inline code, code blocks in triple
backticks (Slack shows no language; backticks inside are kept apart by a zero-width space, as
Slack ends a block at any ```), links `<url|text>`, quotes `> `, "• " bullets and numbered
lists (indented when nested), headings as bold lines, tables as a padded text table in a code
block, rules as a line. `&`, `<` and `>` in text are escaped as Slack requires, so a user's
`<!channel>` typed into a reply never pings anyone.
"""

from __future__ import annotations

import re

from markdown_it.tree import SyntaxTreeNode

from duragent.plugins.markdown_tree import RULE, list_layout, parse, plain_text, table_rows, text_table

_SAFE_LINK = re.compile(r"^(https?|mailto):", re.IGNORECASE)
_BACKTICK_PAIR = re.compile(r"`(?=`)")


def markdown_to_mrkdwn(markdown: str) -> str:
    """Slack mrkdwn for `markdown`; empty Markdown gives ""."""
    return _blocks(parse(markdown).children).strip()


def escape(text: str) -> str:
    """Text with the three characters Slack treats as markup escaped."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _code_block_text(code: str) -> str:
    """`code` for inside a ``` block, escaped, with a zero-width space between backticks.

    Slack has no longer fence: its block ends at the next ```, so a command holding one (an
    approval asked about it) would leave the block and show as mrkdwn. A zero-width space keeps
    every backtick visible while no two of them touch.
    """
    return _BACKTICK_PAIR.sub("`\u200b", escape(code))


def _blocks(nodes: list[SyntaxTreeNode], separator: str = "\n\n") -> str:
    return separator.join(part for node in nodes if (part := _block(node)))


def _block(node: SyntaxTreeNode) -> str:
    kind = node.type
    if kind == "paragraph":
        return _inline_of(node)
    if kind == "heading":
        return f"*{_inline_of(node)}*"
    if kind in ("bullet_list", "ordered_list"):
        return list_layout(node, _blocks)
    if kind == "blockquote":
        inner = _blocks(node.children, separator="\n")
        return "\n".join(f"> {line}" if line else ">" for line in inner.split("\n"))
    if kind in ("fence", "code_block"):
        return f"```\n{_code_block_text(node.content.rstrip(chr(10)))}\n```"
    if kind == "hr":
        return RULE
    if kind == "table":
        table = text_table(table_rows(node))
        return f"```\n{_code_block_text(chr(10).join(table))}\n```" if table else ""
    if kind == "html_block":
        return escape(node.content.rstrip("\n"))
    return _blocks(node.children)


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
        alt = escape(plain_text(node)) or "image"
        return f"<{src}|{alt}>" if _SAFE_LINK.match(src) and "|" not in src else alt
    return _inline_of(node)
