"""Allow ``python -m assist``."""

from assist.cli import main

main()
