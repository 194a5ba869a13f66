"""`python -m duragent.plugins.slack` runs the Slack gateway plugin."""

from duragent.plugins.slack import main

main()
