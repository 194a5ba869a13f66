"""Turn an HTML page into readable plain text for a model, with the standard library's parser.

Why not html2text: it is GPL-3.0 (Duragent is MIT) and would be one more dependency for a job
the stdlib parser does well enough: drop scripts, styles and other invisible parts, keep block
structure as line breaks, headings as `#` lines, list items as `- `, links as `text (url)`,
and preformatted text as it is.
"""

from __future__ import annotations

import itertools
import re
from html.parser import HTMLParser

_INVISIBLE = frozenset({"script", "style", "head", "noscript", "template", "svg", "iframe", "object"})
_BLOCKS = frozenset(
    {
        "address", "article", "aside", "blockquote", "body", "dd", "details", "div", "dl", "dt",
        "fieldset", "figcaption", "figure", "footer", "form", "header", "hr", "html", "main",
        "nav", "ol", "p", "section", "summary", "table", "tbody", "thead", "tfoot", "tr", "ul",
    }
)  # fmt: skip
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_VOID = frozenset(
    {"br", "img", "hr", "input", "meta", "link", "area", "base", "col", "embed", "source", "wbr"}
)
_SPACES = re.compile(r"[ \t\r\f\v\n]+")
_RUNS_OF_SPACES = re.compile(r" {2,}")
_SPACES_AROUND_NEWLINE = re.compile(r" *\n *")
_BLANK_LINES = re.compile(r"\n{3,}")
#: How much HTML the parser is fed at a time. Fed a whole document, CPython's parser rescans the
#: rest of it at every `<` that starts nothing it can finish (`<a<a<a…`, `</</…`): minutes of CPU
#: for one hostile megabyte. Fed in parts it waits for more input there instead, and what is left
#: unparsed at the end is finished only when it is short.
_FEED_CHARS = 64 * 1024
#: The longest unparsed end of a document the parser is asked to finish.
_MAX_UNPARSED_END = 4096


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[tuple[str, bool]] = []  # (text, preformatted)
        self.title = ""
        self._hidden_depth = 0
        self._in_title = False
        self._pre_depth = 0
        self._links: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        if tag in _INVISIBLE:
            if tag not in _VOID:
                self._hidden_depth += 1
            return
        if self._hidden_depth:
            return
        if tag in _HEADINGS:
            self._break(2)
            self._add("#" * _HEADINGS[tag] + " ")
        elif tag == "li":
            self._break(1)
            self._add("- ")
        elif tag == "br":
            self._add("\n")
        elif tag == "pre":
            self._break(2)
            self._pre_depth += 1
        elif tag in ("td", "th"):
            self._add(" | ")
        elif tag == "a":
            self._links.append(dict(attrs).get("href"))
        elif tag == "img":
            alt = dict(attrs).get("alt")
            if alt:
                self._add(f"[image: {alt}]")
        elif tag in _BLOCKS:
            self._break(2 if tag in ("p", "blockquote", "table", "ul", "ol") else 1)

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        if tag in _INVISIBLE:
            self._hidden_depth = max(0, self._hidden_depth - 1)
            return
        if self._hidden_depth:
            return
        if tag in _HEADINGS or tag == "pre":
            if tag == "pre":
                self._pre_depth = max(0, self._pre_depth - 1)
            self._break(2)
        elif tag == "a" and self._links:
            href = self._links.pop()
            if href and not href.startswith(("#", "javascript:")):
                self._add(f" ({href})")
        elif tag in _BLOCKS:
            self._break(1)

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        if self._hidden_depth:
            return
        if self._pre_depth:
            self.parts.append((data, True))
        else:
            self._add(_SPACES.sub(" ", data))

    def _add(self, text: str) -> None:
        self.parts.append((text, False))

    def _break(self, lines: int) -> None:
        self._add("\n" * lines)


def html_to_text(html: str) -> str:
    """Readable text of an HTML document: title first, then the visible content."""
    parser = _TextExtractor()
    for start in range(0, len(html), _FEED_CHARS):
        parser.feed(html[start : start + _FEED_CHARS])
    unparsed = len(parser.rawdata)
    if unparsed <= _MAX_UNPARSED_END:
        parser.close()
    pieces = []
    for preformatted, group in itertools.groupby(parser.parts, key=lambda part: part[1]):
        text = "".join(part[0] for part in group)
        pieces.append(text if preformatted else _tidy(text))
    text = _BLANK_LINES.sub("\n\n", "".join(pieces)).strip()
    title = _SPACES.sub(" ", parser.title).strip()
    if title and not text.startswith(f"# {title}"):
        text = f"Title: {title}\n\n{text}"
    if unparsed > _MAX_UNPARSED_END:
        text += f"\n\n[the last {unparsed} characters are not well-formed HTML and were left out]"
    return text


def _tidy(text: str) -> str:
    """Flowing text: no runs of spaces, no spaces at the start or end of a line."""
    return _SPACES_AROUND_NEWLINE.sub("\n", _RUNS_OF_SPACES.sub(" ", text))
