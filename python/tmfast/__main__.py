"""``python -m tmfast`` runs the command-line interface."""

from tmfast.cli import main

main()
