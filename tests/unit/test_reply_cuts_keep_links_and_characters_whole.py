"""Where a long reply is cut: never inside a link's text or a code span while a space outside
one is there to cut at; and a run with no space at all is cut between characters as a reader
sees them, never inside an emoji built of several code points or an HTML entity."""

from __future__ import annotations

import pytest

from duragent.gateways.chunking import split_message, split_then_convert
from duragent.plugins.markdown_tree import parse
from duragent.plugins.slack.mrkdwn import markdown_to_mrkdwn

LINK = "[the quarterly report on the migration of every service](https://example.com/report)"


def links(piece: str) -> list[tuple[str, str]]:
    """(href, text) of each link in a piece as a Markdown reader sees it."""
    found = []
    for node in parse(piece).walk():
        if node.type == "link":
            text = "".join(child.content for child in node.walk() if child.type == "text")
            found.append((str(node.attrs["href"]), text))
    return found


@pytest.mark.parametrize("before", range(0, 60, 7))
def test_a_link_is_never_cut_inside_its_text(before: int) -> None:
    reply = "word " * before + f"See {LINK} for details " + "and more words " * 20

    pieces = split_message(reply, 120)

    assert [link for piece in pieces for link in links(piece)] == [
        ("https://example.com/report", "the quarterly report on the migration of every service")
    ]
    assert " ".join(pieces).split() == reply.split()


def test_a_code_span_is_never_cut_at_its_spaces() -> None:
    reply = "word " * 9 + "run `git log --oneline --graph --all` then " + "more words " * 20

    pieces = split_message(reply, 70)

    assert any("`git log --oneline --graph --all`" in piece for piece in pieces)


def test_a_link_longer_than_the_limit_is_still_cut_at_its_spaces() -> None:
    reply = "[" + "very long link text " * 10 + "](https://example.com)"

    pieces = split_message(reply, 60)

    assert all(len(piece) <= 60 for piece in pieces)
    assert " ".join(pieces).split() == reply.split()


@pytest.mark.parametrize(
    "grapheme",
    [
        "\U0001f468\u200d\U0001f469\u200d\U0001f467",  # family: three people joined by ZWJ
        "\U0001f1eb\U0001f1f7",  # a flag: two regional indicators
        "\U0001f44d\U0001f3fd",  # thumbs up with a skin tone
        "\u2764\ufe0f",  # heart with its emoji variation selector
        "e\u0301",  # e and a combining acute accent
        "&amp;",
        "&#128512;",
    ],
)
def test_a_run_without_spaces_is_cut_between_whole_characters(grapheme: str) -> None:
    reply = "x" + grapheme * 200

    pieces = split_message(reply, 50)

    assert "".join(pieces) == reply
    assert all(len(piece) <= 50 for piece in pieces)
    assert pieces[0].startswith("x")
    assert [piece.removeprefix("x").replace(grapheme, "") for piece in pieces] == [""] * len(pieces)


def test_slack_pieces_keep_bold_and_strikethrough_on_both_sides_of_a_cut() -> None:
    important, gone = ("important " * 40).strip(), ("gone " * 60).strip()
    reply = "Intro " * 40 + f"**{important}** then ~~{gone}~~ end."

    pieces = split_then_convert(reply, 300, markdown_to_mrkdwn)

    assert len(pieces) > 2
    assert all(len(piece) <= 300 for piece in pieces)
    bold = [piece for piece in pieces if "important" in piece]
    struck = [piece for piece in pieces if "gone" in piece]
    assert len(bold) >= 2
    assert len(struck) >= 2
    for piece in bold:
        chunk = piece[piece.index("important") - 1 :]
        assert chunk.startswith("*important")
        assert "important*" in chunk
    for piece in struck:
        chunk = piece[piece.index("gone") - 1 :]
        assert chunk.startswith("~gone")
        assert "gone~" in chunk
    assert not any("**" in piece or "~~" in piece for piece in pieces)


def test_slack_pieces_fit_when_escaping_lengthens_them() -> None:
    reply = "Tom & Jerry " * 300

    pieces = split_then_convert(reply, 3000, markdown_to_mrkdwn)

    assert all(len(piece) <= 3000 for piece in pieces)
    assert " ".join(pieces).split() == reply.replace("&", "&amp;").split()
