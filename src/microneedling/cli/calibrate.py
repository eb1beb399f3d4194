"""``microneedling calibrate``: fit the calibration rows and (with ``--write``) ship the fit.

    microneedling calibrate [--out DIR] [--write] [--overwrite]

Heavy modules (numpy, scipy, SALib, the engine) are imported inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from microneedling.cli.common import (
    check_out_dir,
    make_console,
    print_disclaimer,
    user_errors,
    writing,
)


def calibrate_command(
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Directory for <version>.toml and calibration.json."),
    ] = None,
    write: Annotated[
        bool,
        typer.Option(
            "--write",
            help="Ship the fit: data/calibration/current.toml and the calibrated values and "
            "intervals in data/parameters/*.toml.",
        ),
    ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace --out.")] = False,
) -> None:
    """Fit the calibration rows of the literature table (weighted least squares, Laplace
    posterior); print residuals, posterior and identifiability."""
    from microneedling.studies.credibility.calibrate import (
        fit,
        summary,
        write_calibration,
        write_values,
    )

    console = make_console()
    with user_errors():
        if out is not None:
            out = check_out_dir(out, overwrite, "calibrate")
        cal = fit()
        console.print(summary(cal), soft_wrap=True)
        if out is not None:
            with writing("calibrate"):
                console.print(f"wrote {write_calibration(cal, out)}")
        if write:
            path = write_calibration(cal, ship=True)
            names = write_values(cal)
            console.print(f"shipped {path.name} as current.toml; wrote {', '.join(names)}")
        print_disclaimer(console)
