"""``microneedling trial SPEC.toml --out DIR``: an in-silico trial on the chosen executor.

Bad specs exit 2 with one line naming the field; an interrupted run (Ctrl-C, a killed process)
keeps its finished chunks in ``DIR.partial/`` and the same command resumes from them.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from microneedling.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    MoleculesOption,
    Terminated,
    check_out_dir,
    fail,
    make_console,
    molecules_scope,
    print_disclaimer,
    user_errors,
    writing,
)
from microneedling.errors import InputError, InputFileError
from microneedling.io import remove_stale_temporaries


def _print_tables(res: Any, console: Any) -> None:
    """Per end point: each arm's n, mean with its 95% CI and responder rate, then each arm against
    the control (difference with its 95% CI, Hedges' g, p values); end points in words with units,
    "—" where a value does not exist (never NaN)."""
    from rich import box
    from rich.table import Table

    from microneedling.reports.format import (
        clean_text,
        endpoint_label,
        format_interval,
        format_number,
        format_p,
        format_percent,
        pretty_units,
    )

    def num(r: Any, key: str) -> float:
        v = r.get(key, math.nan)
        return float(v) if v is not None else math.nan

    def with_ci(r: Any, key: str, lo: str, hi: str, fmt: Any = format_number) -> str:
        iv = format_interval(num(r, lo), num(r, hi))
        return f"{fmt(num(r, key))} [{iv}]" if iv else fmt(num(r, key))

    def draw_cells(r: Any) -> list[str]:
        share = num(r, "epistemic_fraction")
        return [
            format_interval(num(r, "epistemic80_low"), num(r, "epistemic80_high")) or "—",
            format_percent(share) if math.isfinite(share) else "—",
        ]

    paired = res.spec.paired
    drawn = res.parameter_draws is not None
    for e in res.spec.endpoints:
        units = pretty_units(e.spec.units)
        title = f"{endpoint_label(e.spec.text)}" + (f" ({units})" if units and units != "1" else "")
        rule = f"; responder: {e.rule.replace('>=', '≥').replace('<=', '≤')}" if e.rule else ""
        table = Table(
            title=f"{title}{rule}", title_justify="left", title_style="bold", box=box.SIMPLE_HEAD
        )
        table.add_column("Arm", overflow="fold")
        table.add_column("n", justify="right", no_wrap=True)
        table.add_column("Mean [95% CI]", justify="right", no_wrap=True)
        table.add_column("SD", justify="right", no_wrap=True)
        if e.rule:
            table.add_column("Responders [95% CI]", justify="right", no_wrap=True)
        if drawn:
            table.add_column("Over draws (80%)", justify="right", no_wrap=True)
            table.add_column("Param. share", justify="right", no_wrap=True)
        for r in res.summary[res.summary["endpoint"] == e.name].to_dict("records"):
            n = num(r, "n")
            cells = [
                clean_text(r["arm"]),
                str(int(n)) if math.isfinite(n) else "—",
                with_ci(r, "mean", "ci95_low", "ci95_high"),
                format_number(num(r, "sd")),
            ]
            if e.rule:
                rate = ("responder_rate", "responder_ci95_low", "responder_ci95_high")
                cells.append(with_ci(r, *rate, fmt=format_percent))
            if drawn:
                cells += draw_cells(r)
            table.add_row(*cells)
        console.print(table)
        comps = res.comparisons
        rows = comps[comps["endpoint"] == e.name].to_dict("records") if len(comps) else []
        if not rows:
            continue
        rank = "p (Wilcoxon)" if paired else "p (Mann-Whitney)"
        t_test = "p (paired t)" if paired else "p (Welch t)"
        comp = Table(box=box.SIMPLE_HEAD)
        comp.add_column("Arm vs control", overflow="fold")
        comp.add_column("Difference [95% CI]", justify="right", no_wrap=True)
        comp.add_column("Hedges' g", justify="right", no_wrap=True)
        comp.add_column(t_test, justify="right", no_wrap=True)
        comp.add_column(rank, justify="right", no_wrap=True)
        if drawn:
            comp.add_column("Over draws (80%)", justify="right", no_wrap=True)
            comp.add_column("Param. share", justify="right", no_wrap=True)
            comp.add_column("95% CI given sets", justify="right", no_wrap=True)
        for r in rows:
            comp.add_row(
                f"{clean_text(r['arm'])} vs {clean_text(r['control'])}",
                with_ci(r, "difference", "ci95_low", "ci95_high"),
                format_number(num(r, "hedges_g")),
                format_p(num(r, "p_t")),
                format_p(num(r, "p_rank")),
                *(draw_cells(r) if drawn else []),
                *(
                    [format_interval(num(r, "given_draws_ci95_low"), num(r, "given_draws_ci95_high"))
                     or "—"]
                    if drawn
                    else []
                ),
            )  # fmt: skip
        console.print(comp)


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
    parameter_draws: Annotated[
        int | None,
        typer.Option(
            "--parameter-draws",
            "-k",
            min=0,
            metavar="K",
            help="Parameter sets drawn from the posterior, patient i under set i mod K (default: "
            "the spec's parameter_draws, 32 unless it says); 0: every patient at the posterior "
            "median, no parameter uncertainty.",
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace DIR if it holds an earlier trial.")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar and no summary table.")
    ] = False,
    molecules: MoleculesOption = None,
) -> None:
    """Run the in-silico trial SPEC and write trial.nc, summary.csv, comparisons.csv, report.html,
    figures/ and trial.toml (and molecules.toml when the arms name molecules of --molecules) into
    DIR. Interrupted runs resume from DIR.partial/."""
    from microneedling.reports.trial import write_trial
    from microneedling.studies.trial.run import run_trial
    from microneedling.studies.trial.spec import TrialSpec

    t0 = time.perf_counter()
    with user_errors(), molecules_scope(molecules):
        try:
            out = check_out_dir(out, overwrite, "trial")
            partial = partial_dir(out)
            remove_stale_temporaries(partial / "chunks")
            ts = TrialSpec.from_toml(spec)
            if n_per_arm is not None:
                ts = dataclasses.replace(ts, n_per_arm=n_per_arm)
            if parameter_draws is not None:
                ts = dataclasses.replace(ts, parameter_draws=parameter_draws)
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
    _print_tables(res, console)
    print_disclaimer(console)
    console.print(f"Parameters: {res.parameter_source}.", soft_wrap=True)
    if res.draw_warning:
        console.print(f"Warning: {res.draw_warning}.", style="yellow", markup=False, soft_wrap=True)
    console.print(
        f"Wrote {out} in {time.perf_counter() - t0:.1f} s "
        f"({ts.n_per_arm} patients per arm, {len(ts.arms)} arms).",
        soft_wrap=True,
    )
