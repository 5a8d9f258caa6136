"""`python -m llamavid_cli` runs the CLI."""

from .cli.app import main

main()
