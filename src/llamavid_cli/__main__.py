"""`python -m llamavid_cli` runs the CLI."""

from .cli.entry import main

main()
