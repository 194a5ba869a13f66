"""`python -m duragent.plugins.discord` runs the Discord gateway plugin."""

from duragent.plugins.discord import main

main()
