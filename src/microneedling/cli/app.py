"""The ``microneedling`` command: the Typer app and the list of its commands.

Each command is one module of this folder with one function; this module only registers them, so
no command imports this module back. Shared helpers (exit codes, one-line errors, consoles, input
loading, output guards) live in :mod:`microneedling.cli.common`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from microneedling.about import DISCLAIMER, __version__
from microneedling.cli import (
    absorb,
    calibrate,
    parameters,
    plan,
    sbml,
    sensitivity,
    serve,
    simulate,
    sources,
    trial,
    validate,
)

__all__ = ["COMMANDS", "app", "main"]

app = typer.Typer(
    name="microneedling",
    help=(
        "In-silico microneedling (collagen induction therapy): simulate a course, plan one for a "
        "patient, study topical absorption, run virtual trials and sensitivity analyses, calibrate "
        "and validate the model, and list the sources behind every number. " + DISCLAIMER
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

#: (name, function, one-line help) of every command, in the order ``--help`` lists them
COMMANDS: tuple[tuple[str, Callable[..., Any], str | None], ...] = (
    ("simulate", simulate.simulate_command, None),
    ("sources", sources.sources_command, None),
    ("parameters", parameters.parameters_command, None),
    ("absorb", absorb.absorb_command, None),
    (
        "calibrate",
        calibrate.calibrate_command,
        "Fit the calibration rows (weighted least squares, Laplace posterior).",
    ),
    (
        "validate",
        validate.validate_command,
        "Simulate the validation rows; pass/miss, coverage, credibility report.",
    ),
    (
        "plan",
        plan.plan_command,
        "Plan a course for a patient: screening, search, Pareto set, report.",
    ),
    (
        "sensitivity",
        sensitivity.sensitivity_command,
        "Sobol indices of a course's end points over the parameter intervals.",
    ),
    ("sbml", sbml.sbml_command, "Export one site's healing model as SBML Level 3 Version 2."),
    (
        "trial",
        trial.trial_command,
        "Run an in-silico trial on a virtual population (resumable, Dask).",
    ),
    ("serve", serve.serve_command, "Start the HTTP API: accounts, a database, background jobs."),
)

for _name, _function, _short_help in COMMANDS:
    app.command(_name, short_help=_short_help)(_function)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"microneedling {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            help="Print the version and exit.",
            callback=_version_callback,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """In-silico microneedling: a research and planning aid, never a diagnosis."""


def main() -> None:
    """Console-script entry point ``microneedling``."""
    app(prog_name="microneedling")
