"""``microneedling trial SPEC.toml --out DIR``: an in-silico trial on the chosen executor.

Bad specs exit 2 with one line naming the field; an interrupted run (Ctrl-C, a killed process)
keeps its finished chunks in ``DIR.partial/`` and the same command resumes from them.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path
from typing import Annotated

import typer

from microneedling.cli.common import (
    EXIT_BAD_INPUT,
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
from microneedling.errors import InputError, InputFileError
from microneedling.io import remove_stale_temporaries


def partial_dir(out: Path) -> Path:
    """Where an unfinished trial keeps its finished chunks: ``<out>.partial/``."""
    return out.with_name(out.name + ".partial")


def trial_command(
    spec: Annotated[
        Path,
        typer.Argument(metavar="SPEC", help="Trial file (TOML).", show_default=False),
    ],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", metavar="DIR", help="Output directory (written atomically)."),
    ],
    workers: Annotated[
        int,
        typer.Option(
            "--workers", "-w", min=0, metavar="N", help="Local worker processes (0: in-process)."
        ),
    ] = 0,
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler", metavar="ADDR", help="An existing Dask scheduler, tcp://host:port."
        ),
    ] = None,
    chunk_size: Annotated[
        int | None,
        typer.Option(
            "--chunk-size", min=1, metavar="M", help="Patients per batched solve (default 256)."
        ),
    ] = None,
    n_per_arm: Annotated[
        int | None,
        typer.Option("--n", min=2, metavar="N", help="Override the spec's n_per_arm."),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace DIR if it holds an earlier trial.")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar and no summary table.")
    ] = False,
) -> None:
    """Run the in-silico trial SPEC and write trial.nc, summary.csv, comparisons.csv, report.html,
    figures/ and trial.toml into DIR. Interrupted runs resume from DIR.partial/."""
    from microneedling.reports.trial import write_trial
    from microneedling.studies.trial.run import run_trial
    from microneedling.studies.trial.spec import TrialSpec

    t0 = time.perf_counter()
    with user_errors():
        try:
            ts = TrialSpec.from_toml(spec)
            if n_per_arm is not None:
                ts = dataclasses.replace(ts, n_per_arm=n_per_arm)
            out = check_out_dir(out, overwrite, "trial")
            partial = partial_dir(out)
            remove_stale_temporaries(partial / "chunks")
            res = run_trial(
                ts,
                resume_dir=partial / "chunks",
                workers=workers,
                scheduler=scheduler,
                chunk_size=chunk_size,
                progress=not quiet,
            )
            with writing("trial"):
                write_trial(res, out, overwrite=overwrite)
            shutil.rmtree(partial, ignore_errors=True)
        except InputError as exc:
            fail(exc.one_line() if isinstance(exc, InputFileError) else f"{spec}: {exc}",
                 EXIT_BAD_INPUT)  # fmt: skip
        except KeyboardInterrupt as exc:
            what = "terminated" if isinstance(exc, Terminated) else "interrupted"
            fail(
                f"{what}; finished chunks are kept in {partial_dir(out)}/ (rerun to resume)",
                EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED,
            )
    if quiet:
        return
    console = make_console()
    cols = ["endpoint", "arm", "n", "mean", "ci95_low", "ci95_high"]
    if "responder_rate" in res.summary:
        cols.append("responder_rate")
    console.print(res.summary[cols].to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    if len(res.comparisons):
        keep = [
            c
            for c in ("endpoint", "arm", "difference", "hedges_g", "p_t", "p_rank")
            if c in res.comparisons
        ]
        console.print(
            res.comparisons[keep].to_string(index=False, float_format=lambda x: f"{x:.3g}")
        )
    print_disclaimer(console)
    console.print(
        f"Wrote {out} in {time.perf_counter() - t0:.1f} s "
        f"({ts.n_per_arm} patients per arm, {len(ts.arms)} arms).",
        soft_wrap=True,
    )
