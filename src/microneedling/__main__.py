"""``python -m microneedling`` runs the command-line interface."""

from microneedling.cli.app import main

main()
