"""`python -m scalp`: the same as the `scalp` command."""

from scalp.cli import main

main()
