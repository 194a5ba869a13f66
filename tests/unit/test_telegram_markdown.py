"""Markdown -> Telegram HTML, and splitting that HTML into messages Telegram accepts."""

from __future__ import annotations

import pytest

from duragent.plugins.telegram.chunks import split_telegram_html
from duragent.plugins.telegram.markdown import markdown_to_telegram_html
from duragent.testing.fake_telegram import BotAPIError, _parse_html


@pytest.mark.parametrize(
    ("markdown", "html"),
    [
        ("**bold** and *italic* and ~~gone~~", "<b>bold</b> and <i>italic</i> and <s>gone</s>"),
        ("# Title\n\nText", "<b>Title</b>\n\nText"),
        ("use `a < b && c`", "use <code>a &lt; b &amp;&amp; c</code>"),
        (
            "```python\nif a < b:\n    pass\n```",
            '<pre><code class="language-python">if a &lt; b:\n    pass</code></pre>',
        ),
        ("```\nplain\n```", "<pre>plain</pre>"),
        ("[docs](https://example.com/?a=1&b=2)", '<a href="https://example.com/?a=1&amp;b=2">docs</a>'),
        ("> quoted\n> text", "<blockquote>quoted\ntext</blockquote>"),
        ("- one\n- two\n  - nested", "• one\n• two\n  • nested"),
        ("3. third\n4. fourth", "3. third\n4. fourth"),
        ("<script>alert(1)</script> & more", "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more"),
        ("snake_case_name stays", "snake_case_name stays"),
        ("unclosed **bold", "unclosed **bold"),
        ("above\n\n---\n\nbelow", "above\n\n──────────\n\nbelow"),
    ],
)
def test_markdown_becomes_the_html_subset_telegram_accepts(markdown: str, html: str) -> None:
    assert markdown_to_telegram_html(markdown) == html


def test_tables_become_a_padded_text_table_in_pre() -> None:
    html = markdown_to_telegram_html("| name | qty |\n|---|---|\n| apple | 3 |\n| kiwi | 12 |")

    assert html == "<pre>name  | qty\n------+----\napple | 3\nkiwi  | 12</pre>"


def test_links_with_unsafe_schemes_keep_only_their_text() -> None:
    assert markdown_to_telegram_html("[x](ftp://host/file) [y](/relative)") == "x y"


def test_arbitrary_markdown_always_gives_html_telegram_can_parse() -> None:
    pieces = [
        "**",
        "*",
        "_",
        "`",
        "```",
        "~~",
        "[",
        "](",
        ")",
        "<b>",
        "&",
        "# ",
        "\n",
        "- ",
        "> ",
        "|",
        "word ",
    ]
    for seed in range(400):
        text = "".join(pieces[(seed * 7 + i * 13) % len(pieces)] for i in range(seed % 40 + 1))
        _parse_html(markdown_to_telegram_html(text))  # raises BotAPIError on bad markup


def test_a_short_message_is_one_chunk() -> None:
    assert split_telegram_html("<b>hi</b>") == ["<b>hi</b>"]


def test_chunks_prefer_paragraph_boundaries_and_stay_within_the_limit() -> None:
    paragraphs = [f"para {n} " + "x" * 30 for n in range(10)]

    chunks = split_telegram_html("\n\n".join(paragraphs), limit=100)

    assert all(len(_parse_html(chunk)) <= 100 for chunk in chunks)
    assert all(chunk.startswith("para") for chunk in chunks)
    assert "".join(chunks).replace("para", " para").split() == " ".join(paragraphs).split()


def test_tags_open_at_a_cut_are_closed_and_reopened() -> None:
    code = "\n".join(f"line {n}" for n in range(40))

    chunks = split_telegram_html(f'<pre><code class="language-py">{code}</code></pre>', limit=100)

    assert len(chunks) > 1
    for chunk in chunks:
        assert chunk.startswith('<pre><code class="language-py">')
        assert chunk.endswith("</code></pre>")
        _parse_html(chunk)


def test_entities_count_as_one_character_and_are_never_cut() -> None:
    chunks = split_telegram_html("&lt;" * 150, limit=100)

    assert [len(_parse_html(chunk)) for chunk in chunks] == [100, 50]


def test_a_word_longer_than_the_limit_is_cut_hard() -> None:
    assert [len(chunk) for chunk in split_telegram_html("y" * 250, limit=100)] == [100, 100, 50]


def test_emoji_count_as_two_utf16_units_like_telegram_counts_them() -> None:
    chunks = split_telegram_html("😀" * 60, limit=100)

    assert [len(chunk) for chunk in chunks] == [50, 10]


def test_the_fake_refuses_what_a_broken_splitter_would_produce() -> None:
    with pytest.raises(BotAPIError):
        _parse_html("<b>never closed")
