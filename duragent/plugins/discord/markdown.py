"""Markdown (as agents write it) -> the Markdown Discord renders.

Discord renders most of CommonMark itself (bold, italics, strikethrough, code, fenced code with
a language, block quotes, lists, `#`-`###` headings, masked links in bot messages), so the text
is kept as written except for what Discord shows as raw characters: tables become a padded text
table in a code block, deeper headings become bold lines, rules become a line, and images become
links. Only whole block ranges found by markdown-it-py are rewritten, so code stays untouched,
and a rewritten block keeps the quote markers or list indentation it is nested in.
"""

from __future__ import annotations

import re

from markdown_it.token import Token

from duragent.plugins.markdown_tree import RULE, parse_tokens, text_table

_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def markdown_to_discord(markdown: str) -> str:
    """Discord Markdown for `markdown`."""
    lines = markdown.split("\n")
    tokens = parse_tokens(markdown)
    replacements: list[tuple[int, int, list[str]]] = []
    code_lines: set[int] = set()
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if token.map is None:
            index += 1
            continue
        start, end = token.map
        if token.type in ("fence", "code_block"):
            code_lines.update(range(start, end))
        elif token.type == "hr":
            replacements.append((start, end, [_container(lines[start]) + RULE]))
        elif token.type == "heading_open" and token.tag in ("h4", "h5", "h6"):
            # Up to the heading's `#`s: a quote's `>` or a list item's marker stays.
            prefix = lines[start][: lines[start].index("#")]
            replacements.append((start, end, [f"{prefix}**{tokens[index + 1].content.strip()}**"]))
        elif token.type == "table_open":
            close = next(i for i in range(index, len(tokens)) if tokens[i].type == "table_close")
            prefix = _container(lines[start])
            replacements.append((start, end, [prefix + line for line in _table(tokens[index:close])]))
            code_lines.update(range(start, end))
            index = close
        index += 1
    for number, line in enumerate(lines):
        if number not in code_lines:
            lines[number] = _IMAGE.sub(lambda m: f"[{m.group(1) or 'image'}]({m.group(2)})", line)
    for start, end, new in sorted(replacements, reverse=True):
        lines[start:end] = new
    return "\n".join(lines).strip()


def _container(line: str) -> str:
    """The quote markers and indentation a nested block's line starts with, kept when it is rewritten
    (else a table in a quote would end the quote)."""
    return line[: len(line) - len(line.lstrip("> \t"))]


def _table(tokens: list[Token]) -> list[str]:
    rows: list[list[str]] = []
    for token in tokens:
        if token.type == "tr_open":
            rows.append([])
        elif token.type == "inline" and rows:
            rows[-1].append(_plain(token))
    table = text_table(rows)
    return ["```", *table, "```"] if table else []


def _plain(inline: Token) -> str:
    """A table cell's visible text, without markup (code fences show it literally)."""
    parts = []
    for child in inline.children or []:
        if child.type in ("text", "code_inline", "html_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
    return "".join(parts)
