"""`python -m revopipe` is the `revopipe` command."""

from revopipe.cli import main

main()
