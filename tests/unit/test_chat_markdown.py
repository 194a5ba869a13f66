"""Agent Markdown as Discord and Slack show it."""

from __future__ import annotations

from duragent.plugins.discord.markdown import markdown_to_discord
from duragent.plugins.slack.mrkdwn import markdown_to_mrkdwn


def test_discord_keeps_what_it_renders_and_rewrites_what_it_would_show_raw() -> None:
    markdown = (
        "# Plan\n\n**bold** _it_ ~~gone~~ `x < y` [docs](https://d.test)\n\n#### Small print\n\n"
        "| item | n |\n|---|---|\n| apples | 3 |\n\n---\n\n![chart](https://c.test/c.png)\n\n"
        "```py\n![kept](as-is)\n| a | b |\n```"
    )

    assert markdown_to_discord(markdown) == (
        "# Plan\n\n**bold** _it_ ~~gone~~ `x < y` [docs](https://d.test)\n\n**Small print**\n\n"
        "```\nitem   | n\n-------+--\napples | 3\n```\n\n──────────\n\n[chart](https://c.test/c.png)\n\n"
        "```py\n![kept](as-is)\n| a | b |\n```"
    )


def test_slack_mrkdwn_maps_emphasis_links_lists_quotes_and_code() -> None:
    markdown = (
        "## Plan\n\n**bold**, *it*, ~~gone~~ and [docs](https://d.test)\n\n"
        "- one\n- two\n  1. nested\n\n> quoted\n> twice\n\n```python\nprint('hi')\n```"
    )

    assert markdown_to_mrkdwn(markdown) == (
        "*Plan*\n\n*bold*, _it_, ~gone~ and <https://d.test|docs>\n\n"
        "• one\n• two\n  1. nested\n\n> quoted\n> twice\n\n```\nprint('hi')\n```"
    )


def test_slack_mrkdwn_escapes_what_would_ping_or_link_and_drops_unsafe_links() -> None:
    assert (
        markdown_to_mrkdwn("<!channel> & <@U123> see `a<b`")
        == "&lt;!channel&gt; &amp; &lt;@U123&gt; see `a&lt;b`"
    )
    assert markdown_to_mrkdwn("see [x](ftp://files.test/a) ok") == "see x ok"


def test_slack_mrkdwn_renders_tables_as_padded_code() -> None:
    assert markdown_to_mrkdwn("| a | bb |\n|---|---|\n| 1 | 2 |") == "```\na | bb\n--+---\n1 | 2\n```"
