"""Allow ``python -m assist``."""

from assist.launch import main

main()
