"""`python -m duragent` runs the CLI."""

from duragent.cli import main

main()
