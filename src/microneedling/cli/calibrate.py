"""``microneedling calibrate``: the Bayesian calibration, resumable; with ``--write``, ship it.

    microneedling calibrate [--out DIR] [--screening run|shipped] [--steps N] [--workers N]
                            [--leave-out STUDY] [--write] [--write-values] [--overwrite]
                            [--quiet]

Stages (``microneedling.studies.credibility.pipeline``): sensitivity screening, history matching,
emcee sampling, posterior files. Finished work is kept in ``DIR.partial/`` and the same command
resumes from it; the results are written to DIR atomically. Heavy modules are imported inside the
command.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Annotated

import typer

from microneedling.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    Terminated,
    check_out_dir,
    fail,
    make_console,
    print_disclaimer,
    user_errors,
    writing,
)
from microneedling.io import atomic_directory, remove_stale_temporaries


def partial_dir(out: Path) -> Path:
    """Where an unfinished calibration keeps its finished chunks: ``<out>.partial/``."""
    return out.with_name(out.name + ".partial")


def calibrate_command(
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            metavar="DIR",
            help="Directory for screening.toml, posterior-<hash>.npz/.toml and calibration.json.",
        ),
    ] = Path("calibration-run"),
    screening: Annotated[
        str,
        typer.Option(
            "--screening",
            metavar="run|shipped",
            help="Run the sensitivity screening (default) or reuse the shipped selection.",
        ),
    ] = "run",
    steps: Annotated[
        int | None,
        typer.Option(
            "--steps", min=1, metavar="N", help="Ensemble steps (default: calibrate.toml)."
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            metavar="N",
            help="Processes that evaluate the parameter vectors (the same numbers with any N; "
            "2 on a 2-core machine halves the time).",
        ),
    ] = 1,
    leave_out: Annotated[
        str | None,
        typer.Option(
            "--leave-out",
            metavar="STUDY",
            help="Leave one calibration study out (with --screening shipped): a refit for "
            "leave-one-study-out cross-validation, scored by `python -m "
            "microneedling.studies.credibility.loso_refit DIR`; never shipped.",
        ),
    ] = None,
    write: Annotated[
        bool,
        typer.Option(
            "--write",
            help="Ship the posterior: data/calibration/posterior-<hash>.*, current.toml and "
            "screening.toml.",
        ),
    ] = False,
    write_values: Annotated[
        bool,
        typer.Option(
            "--write-values",
            help="With --write, also put the posterior medians and 5-95% intervals into "
            "data/parameters/*.toml (their priors are kept in calibrate.toml).",
        ),
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace DIR if it holds an earlier calibration.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Calibrate the model on the calibration rows of the literature table: screening, history
    matching and emcee sampling of the posterior; print diagnostics. Interrupted runs resume from
    DIR.partial/."""
    from microneedling.studies.credibility.pipeline import run_pipeline, ship_run

    console = make_console()
    with user_errors():
        if screening not in ("run", "shipped"):
            raise typer.BadParameter(
                f"got {screening!r}; allowed: 'run' or 'shipped'", param_hint="--screening"
            )
        if write_values and not write:
            raise typer.BadParameter("needs --write", param_hint="--write-values")
        if leave_out and write:
            raise typer.BadParameter(
                "a refit with studies left out is for cross-validation and is never shipped",
                param_hint="--write",
            )
        out = check_out_dir(out, overwrite, "calibrate")
        partial = partial_dir(out)
        for d in (partial, *(partial / s for s in ("screening", "history", "chain"))):
            remove_stale_temporaries(d)  # left by a killed run (its finished chunks are kept)
            for sub in (d / "morris", d / "sobol"):
                remove_stale_temporaries(sub)
        try:
            summary = run_pipeline(
                partial,
                screening=screening,
                steps=steps,
                workers=workers,
                leave_out=leave_out,
                progress=not quiet,
                log=lambda m: console.print(m, soft_wrap=True),
            )
        except KeyboardInterrupt as exc:
            what = "terminated" if isinstance(exc, Terminated) else "interrupted"
            fail(
                f"{what}; finished work is kept in {partial}/ (rerun to resume)",
                EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED,
            )
        paths = [Path(p) for p in summary.pop("paths").values()]
        with writing("calibrate"), atomic_directory(out, overwrite=overwrite) as tmp:
            for p in [*paths, partial / "screening.toml"]:
                if p.exists():
                    shutil.copyfile(p, tmp / p.name)
            (tmp / "calibration.json").write_text(
                json.dumps(summary, indent=2, default=str), encoding="utf-8"
            )
        shutil.rmtree(partial, ignore_errors=True)
        console.print(f"wrote {out}", soft_wrap=True)
        if write:
            names = ship_run(out, values=write_values)
            console.print(f"shipped: {', '.join(names)}", soft_wrap=True)
        print_disclaimer(console)
