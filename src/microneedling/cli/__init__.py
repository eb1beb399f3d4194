"""Command-line interface: ``microneedling <command>``.

:mod:`microneedling.cli.app` holds the Typer app and the list of commands, one module per command;
:mod:`microneedling.cli.common` what they share. Nothing in the package imports this folder.
"""
