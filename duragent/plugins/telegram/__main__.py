"""`python -m duragent.plugins.telegram` runs the Telegram gateway plugin."""

from duragent.plugins.telegram import main

main()
