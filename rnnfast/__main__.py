"""`python -m rnnfast ...` is the `rnnfast` command."""

from rnnfast.cli import main

main()
