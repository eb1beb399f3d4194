"""``microneedling validate [--out DIR] [--delivery]``: the held-out literature rows, interval
coverage and the credibility report; with ``--delivery``, the transport's delivery validation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from microneedling.cli.common import (
    MAX_DRAWS,
    check_out_dir,
    make_console,
    print_disclaimer,
    user_errors,
    writing,
)


def validate_command(
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Directory for report.html and credibility.json."),
    ] = None,
    draws: Annotated[
        int | None,
        typer.Option(
            "--draws",
            min=0,
            max=MAX_DRAWS,
            metavar="N",
            help="Ensemble draws (default 256: data/calibration/calibrate.toml).",
        ),
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
    no_checks: Annotated[
        bool,
        typer.Option(
            "--no-checks",
            help="Skip calculation verification, the calibration check (posterior predictive, "
            "leave-one-study-out) and the virtual-cohort spread.",
        ),
    ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace --out.")] = False,
    delivery: Annotated[
        bool,
        typer.Option(
            "--delivery",
            help="Print the transport vs published microneedle delivery "
            "(data/delivery_validation.toml) as a markdown table instead.",
        ),
    ] = False,
) -> None:
    """Simulate every validation row's protocol under the posterior ensemble; print pass/miss,
    intervals, PIT and scores; with --out, write the credibility report (report.html +
    credibility.json)."""
    from microneedling.reports.credibility import delivery_table, validation_table, write_report
    from microneedling.studies.credibility.delivery import predict
    from microneedling.studies.credibility.report import build_report
    from microneedling.studies.credibility.validate import validate

    console = make_console()
    with user_errors():
        if delivery:
            if out is not None:
                raise typer.BadParameter(
                    "--delivery prints a table; it writes no report", param_hint="--out"
                )
            console.print(delivery_table(predict()), soft_wrap=True)
            print_disclaimer(console)
            return
        if out is not None:
            out = check_out_dir(out, overwrite, "validate")
        if sobol_n_base < 2 or sobol_n_base & (sobol_n_base - 1):
            raise typer.BadParameter(
                f"got {sobol_n_base}; allowed: a power of two >= 2", param_hint="--sobol-n-base"
            )
        if out is None:
            val = validate(draws=draws, seed=seed, checks=not no_checks)
            console.print(validation_table(val), soft_wrap=True)
        else:
            report = build_report(
                draws=draws,
                seed=seed,
                sobol_n_base=sobol_n_base,
                sobol=not no_sobol,
                verification=not no_verification,
                checks=not no_checks,
            )
            with writing("validate"):
                write_report(out, report, overwrite=overwrite)
            v = report["validation"]
            c = report["calibration"]
            cov = v["summary"]["coverage_80"]
            console.print(
                f"posterior {c.get('version', 'none')} (samples reproduce the summary: "
                f"{c.get('reproduces_summary')}); validation: {v['n_pass']}/{v['n_evaluated']} "
                f"rows within tolerance, 80% coverage {cov['hits']}/{cov['n']} two-sided rows; "
                f"wrote {out}/report.html and credibility.json",
                soft_wrap=True,
            )
        print_disclaimer(console)
