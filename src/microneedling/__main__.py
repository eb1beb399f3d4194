"""``python -m microneedling`` runs the command-line interface."""

from .cli import main

main()
