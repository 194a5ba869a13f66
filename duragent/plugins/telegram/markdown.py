"""Markdown (as agents write it) -> the HTML subset Telegram's `parse_mode=HTML` accepts.

Parsed with markdown-it-py (CommonMark + tables + strikethrough) and rendered from the syntax
tree, so every tag is closed and every piece of text escaped by construction: Telegram never
sees markup it refuses. Mapping, as in the Rust plugin: headings and bold -> `<b>`, italics
`<i>`, strikethrough `<s>`, inline code `<code>`, fenced code `<pre><code class="language-x">`,
links `<a href>`, blockquotes, "• " bullets and numbered lists (indented when nested), tables
as a padded text table in `<pre>`, rules as a line, raw HTML shown as text.
"""

from __future__ import annotations

import html
import re

from markdown_it.tree import SyntaxTreeNode

from duragent.plugins.markdown_tree import RULE, list_layout, parse, plain_text, table_rows, text_table

_SAFE_LINK = re.compile(r"^(https?|tg|mailto):", re.IGNORECASE)
_LANGUAGE = re.compile(r"^[\w+#.-]+$")


def markdown_to_telegram_html(markdown: str) -> str:
    """Telegram HTML for `markdown`; empty Markdown gives ""."""
    return _blocks(parse(markdown).children, in_quote=False).strip()


def _escape(text: str) -> str:
    return html.escape(text, quote=False)


def _blocks(nodes: list[SyntaxTreeNode], *, in_quote: bool, separator: str = "\n\n") -> str:
    return separator.join(part for node in nodes if (part := _block(node, in_quote=in_quote)))


def _block(node: SyntaxTreeNode, *, in_quote: bool) -> str:
    kind = node.type
    if kind == "paragraph":
        return _inline_of(node)
    if kind == "heading":
        return f"<b>{_inline_of(node)}</b>"
    if kind in ("bullet_list", "ordered_list"):
        return list_layout(
            node, lambda children, separator: _blocks(children, in_quote=in_quote, separator=separator)
        )
    if kind == "blockquote":
        inner = _blocks(node.children, in_quote=True, separator="\n")
        # Telegram does not nest blockquotes; an inner quote stays plain text in the outer one.
        return inner if in_quote else f"<blockquote>{inner}</blockquote>"
    if kind == "fence":
        return _code_block(node.content, node.info.strip().split(" ")[0] if node.info else "")
    if kind == "code_block":
        return _code_block(node.content, "")
    if kind == "hr":
        return RULE
    if kind == "table":
        table = text_table(table_rows(node))
        return f"<pre>{_escape(chr(10).join(table))}</pre>" if table else ""
    if kind == "html_block":
        return _escape(node.content.rstrip("\n"))
    return _blocks(node.children, in_quote=in_quote)


def _code_block(code: str, language: str) -> str:
    body = _escape(code.rstrip("\n"))
    if language and _LANGUAGE.match(language):
        return f'<pre><code class="language-{language}">{body}</code></pre>'
    return f"<pre>{body}</pre>"


def _inline_of(node: SyntaxTreeNode) -> str:
    return "".join(_inline(child) for child in node.children)


def _inline(node: SyntaxTreeNode) -> str:
    kind = node.type
    if kind == "inline":
        return _inline_of(node)
    if kind == "text":
        return _escape(node.content)
    if kind in ("softbreak", "hardbreak"):
        return "\n"
    if kind == "code_inline":
        return f"<code>{_escape(node.content)}</code>"
    if kind == "html_inline":
        return _escape(node.content)
    tags = {"strong": "b", "em": "i", "s": "s"}
    if kind in tags:
        return f"<{tags[kind]}>{_inline_of(node)}</{tags[kind]}>"
    if kind == "link":
        href = str(node.attrs.get("href", ""))
        text = _inline_of(node)
        if not _SAFE_LINK.match(href):
            return text
        return f'<a href="{html.escape(href, quote=True)}">{text}</a>'
    if kind == "image":
        alt = plain_text(node) or "image"
        src = str(node.attrs.get("src", ""))
        if not _SAFE_LINK.match(src):
            return _escape(alt)
        return f'<a href="{html.escape(src, quote=True)}">{_escape(alt)}</a>'
    return _inline_of(node)
