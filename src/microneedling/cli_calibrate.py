"""``microneedling calibrate`` (fit with a Laplace posterior) and ``microneedling validate``
(held-out literature rows and the credibility report).

    microneedling calibrate [--out DIR] [--write] [--overwrite]
    microneedling validate [--out DIR] [--draws N] [--seed S] [--sobol-n-base N] [--no-sobol]
        [--no-verification] [--overwrite]

Heavy modules (numpy, scipy, SALib, the engine) are imported inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .cli import _console, _print_disclaimer, _user_errors, app


@app.command(
    "calibrate", short_help="Fit the calibration rows (weighted least squares, Laplace posterior)."
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
    console = _console()
    with _user_errors():
        from .calibrate import fit, summary, write_calibration, write_values
        from .io import OutputExistsError

        if out is not None and out.exists() and not overwrite:
            raise OutputExistsError(f"{out} already exists; use --overwrite to replace it")
        cal = fit()
        console.print(summary(cal), soft_wrap=True)
        if out is not None:
            console.print(f"wrote {write_calibration(cal, out)}")
        if write:
            path = write_calibration(cal, ship=True)
            names = write_values(cal)
            console.print(f"shipped {path.name} as current.toml; wrote {', '.join(names)}")
        _print_disclaimer(console)


@app.command(
    "validate", short_help="Simulate the validation rows; pass/miss, coverage, credibility report."
)
def validate_command(
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Directory for report.html and credibility.json."),
    ] = None,
    draws: Annotated[
        int | None,
        typer.Option("--draws", help="Parameter draws for the 80% prediction intervals."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the draws and of Sobol.")] = 0,
    sobol_n_base: Annotated[
        int, typer.Option("--sobol-n-base", help="Sobol base sample size (power of 2).")
    ] = 64,
    no_sobol: Annotated[
        bool, typer.Option("--no-sobol", help="Skip the global sensitivity summary.")
    ] = False,
    no_verification: Annotated[
        bool, typer.Option("--no-verification", help="Skip the live code-verification checks.")
    ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace --out.")] = False,
) -> None:
    """Simulate every validation row's protocol; print pass/miss and interval coverage; with
    --out, write the credibility report (report.html + credibility.json)."""
    console = _console()
    with _user_errors():
        from .io import OutputExistsError

        if out is not None and out.exists() and not overwrite:
            raise OutputExistsError(f"{out} already exists; use --overwrite to replace it")
        if sobol_n_base < 2 or sobol_n_base & (sobol_n_base - 1):
            raise typer.BadParameter(
                f"got {sobol_n_base}; allowed: a power of two >= 2", param_hint="--sobol-n-base"
            )
        if out is None:
            from .validate import table, validate

            console.print(table(validate(draws=draws, seed=seed)), soft_wrap=True)
        else:
            from .credibility import build_report, write_report

            report = build_report(
                draws=draws,
                seed=seed,
                sobol_n_base=sobol_n_base,
                sobol=not no_sobol,
                verification=not no_verification,
            )
            write_report(out, report, overwrite=overwrite)
            v = report["validation"]
            c = report["calibration"]
            console.print(
                f"calibration {c['version']} (reproduces shipped: {c['reproduces_shipped']}); "
                f"validation: {v['n_pass']}/{v['n_evaluated']} rows within tolerance, "
                f"coverage {v['n_covered']}/{v['n_evaluated']}; wrote {out}/report.html and "
                "credibility.json"
            )
        _print_disclaimer(console)
