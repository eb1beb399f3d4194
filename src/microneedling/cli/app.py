"""The ``microneedling`` command: the Typer app and the list of its commands.

Each command is one module of this folder with one function; this module only registers them, so
no command imports this module back. Shared helpers (exit codes, one-line errors, consoles, input
loading, output guards) live in :mod:`microneedling.cli.common`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer

from microneedling import interrupts
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
from microneedling.cli.common import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    STATE,
    Command,
    Terminated,
    install_signal_handlers,
    one_line,
)

__all__ = ["COMMANDS", "app", "main"]

app = typer.Typer(
    name="microneedling",
    help=(
        "In-silico microneedling (collagen induction therapy): simulate a course, plan one for a "
        "patient, study topical absorption, run virtual trials and sensitivity analyses, calibrate "
        "and validate the model, and list the sources behind every number. " + DISCLAIMER
    ),
    invoke_without_command=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,  # plain click help: wraps to the terminal, no <bool> metavars
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
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
    app.command(_name, short_help=_short_help, cls=Command)(_function)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"microneedling {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
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
    if ctx.invoked_subcommand is None:  # `microneedling` alone: the help, exit 0
        typer.echo(ctx.get_help())
        raise typer.Exit(0)


def main() -> None:
    """Console-script entry point ``microneedling``.

    SIGTERM/SIGHUP unwind like Ctrl-C (temporaries removed, exit 143), also when foreign code
    turned the interrupt into an error of its own (:func:`microneedling.interrupts.behind`); any
    other exception that is not the package's own becomes one line and exit 3 (the traceback only
    with ``MICRONEEDLING_TRACEBACK=1``): no traceback reaches a user.
    """
    install_signal_handlers()
    STATE["main"] = True
    try:
        code = app(prog_name="microneedling", standalone_mode=False)
    except typer.Abort:
        code = EXIT_INTERRUPTED
    except typer.TyperException as exc:  # usage errors: click's own message and exit code (2)
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            typer.echo(f"error: {one_line(str(exc))}", err=True)
        code = int(getattr(exc, "exit_code", 2))
    except Terminated:
        typer.echo("error: terminated", err=True)
        code = EXIT_TERMINATED
    except KeyboardInterrupt:
        typer.echo("error: interrupted", err=True)
        code = EXIT_INTERRUPTED
    except Exception as exc:
        if interrupts.behind(exc) is not None:
            # an interrupt that foreign code turned into an error of its own (pybind11: an
            # ImportError from it): reported below as the interrupt it was
            code = EXIT_INTERRUPTED
        elif os.environ.get("MICRONEEDLING_TRACEBACK"):
            raise
        else:
            typer.echo(
                f"error: internal error ({type(exc).__name__}: {one_line(str(exc))[:300]}); "
                "this is a bug, please report it with the command line "
                "(MICRONEEDLING_TRACEBACK=1 shows the traceback)",
                err=True,
            )
            code = EXIT_INTERNAL
    if code == EXIT_INTERRUPTED and not STATE["reported"]:
        # interrupted outside a command's own error handling (typer returns 130 silently)
        code = EXIT_TERMINATED if STATE["terminated"] else EXIT_INTERRUPTED
        typer.echo(f"error: {'terminated' if STATE['terminated'] else 'interrupted'}", err=True)
    sys.exit(code if isinstance(code, int) else 0)
