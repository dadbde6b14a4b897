"""``python -m celebamask``: the command line."""

from celebamask.cli import main

main()
