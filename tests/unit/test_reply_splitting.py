"""Long replies split for chat platforms (Discord, plugins that do not split themselves) render
as written: fenced code blocks whatever their fence, and bold, strikethrough and code spans cut
in two by a split paragraph are closed in one piece and reopened in the next."""

from __future__ import annotations

from duragent.gateways.chunking import split_message
from duragent.plugins.markdown_tree import parse

INNER = "\n".join(["```python", "def f():", "", "    return 1", "```", ""] * 60).strip("\n")
README = f"Here is the README:\n\n````markdown\n{INNER}\n````\n\nThat's all."


def code_blocks(piece: str) -> list[tuple[str, str]]:
    """(info, content) of each fenced block of a piece as a Markdown reader sees it."""
    return [(node.info, node.content) for node in parse(piece).walk() if node.type == "fence"]


def test_a_four_backtick_block_showing_fences_is_split_with_its_own_fence() -> None:
    pieces = split_message(README, 2000)

    blocks = [block for piece in pieces for block in code_blocks(piece)]
    # Each piece of the outer block is fenced as it was: shown as Markdown source, never rendered.
    assert len(blocks) > 1
    assert [info for info, _ in blocks] == ["markdown"] * len(blocks)
    assert "".join(content for _, content in blocks) == INNER + "\n"
    assert pieces[-1].endswith("````\n\nThat's all.")


def texts_and_strong(piece: str) -> tuple[str, str]:
    """(plain text outside emphasis, text inside bold) of a piece as a Markdown reader sees it."""
    plain = "".join(n.content for n in parse(piece).walk() if n.type == "text" and n.parent.type != "strong")
    strong = "".join(n.content for n in parse(piece).walk() if n.type == "text" and n.parent.type == "strong")
    return plain, strong


def test_bold_cut_by_a_split_paragraph_is_bold_in_both_pieces() -> None:
    important = ("important " * 100).strip()
    reply = "Intro " * 300 + f"**{important}** and the end."

    pieces = split_message(reply, 2000)

    assert len(pieces) == 2
    assert all(len(piece) <= 2000 for piece in pieces)
    rendered = [texts_and_strong(piece) for piece in pieces]
    assert all("*" not in plain for plain, _ in rendered)
    assert " ".join(strong for _, strong in rendered).split() == important.split()


def test_strikethrough_and_code_spans_are_reopened_too() -> None:
    struck = ("gone " * 100).strip()
    code = " ".join(f"x{n}" for n in range(200))
    reply = "Intro " * 300 + f"~~{struck}~~ and `{code}` end."

    pieces = split_message(reply, 1000)

    for piece in pieces:
        assert piece.count("~~") % 2 == 0
        assert piece.count("`") % 2 == 0


def test_a_lone_backtick_or_pair_of_stars_stays_a_character() -> None:
    reply = "It`s 2**10 " + "words " * 400 + "and more."

    pieces = split_message(reply, 1000)

    assert " ".join(pieces).split() == reply.split()
