"""Slack's markup in a message's text reads as Slack shows it to people."""

from __future__ import annotations

from duragent.plugins.slack import markup


def test_a_channel_sent_without_its_name_reads_as_the_name_looked_up() -> None:
    text = "see <#C1|> and <#C2>"
    assert markup.CHANNEL.findall(text) == ["C1", "C2"]
    assert markup.as_read(text, {"C1": "general", "C2": "random"}) == "see #general and #random"


def test_what_a_person_typed_that_looks_like_markup_stays_as_typed() -> None:
    assert markup.as_read("a &lt;#C1|x&gt; b &amp; c", {"C1": "general"}) == "a <#C1|x> b & c"
