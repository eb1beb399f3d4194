"""``microneedling sensitivity``: Sobol indices of a course's end points.

    microneedling sensitivity COURSE --out DIR [--endpoint E ...] [--n-base N] [--seed S]
        [--parameter P ...] [--second-order] [--workers N | --scheduler tcp://host:port]
        [--chunk-size N] [--overwrite] [--quiet] [--parameter-set DIR]

Heavy modules (numpy, SALib, xarray, matplotlib, libsbml) are imported inside the commands.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from microneedling.cli.common import (
    EXIT_BAD_INPUT,
    CourseArgument,
    MoleculesOption,
    ParameterSetOption,
    check_out_dir,
    fail,
    load_course,
    load_parameter_set,
    make_console,
    molecules_scope,
    print_disclaimer,
    user_errors,
    write_molecules,
)
from microneedling.errors import InputError
from microneedling.io import (
    atomic_directory,
    write_csv_atomic,
    write_netcdf_atomic,
    write_text_atomic,
)

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console

#: files a sensitivity run directory holds
SENSITIVITY_FILES = ("sobol.nc", "sobol.csv", "sobol.png", "report.html", "course.toml")
#: below this base sample size the indices are rough (a warning says so before the runs)
MIN_N_BASE = 64


def _print_indices(ds: Any, console: Console, top: int) -> None:
    from rich.table import Table

    from microneedling.studies.sensitivity import indices_table

    df = indices_table(ds)
    for e, rows in df.groupby("endpoint", sort=False):
        units = rows["units"].iloc[0]
        std = float(ds.output_std.sel(endpoint=e))
        mean = float(ds.output_mean.sel(endpoint=e))
        table = Table(
            title=f"{e}  (mean {mean:.4g} {units}, sd {std:.4g} over the design)",
            title_justify="left",
        )
        for head in ("parameter", "S1", "± 95%", "ST", "± 95%"):
            table.add_column(head, justify="left" if head == "parameter" else "right")
        for _, r in rows.head(top).iterrows():
            table.add_row(
                str(r["parameter"]),
                f"{r['S1']:.3f}",
                f"{r['S1_conf']:.3f}",
                f"{r['ST']:.3f}",
                f"{r['ST_conf']:.3f}",
            )
        if len(rows) > top:
            table.caption = f"{len(rows) - top} more parameters in sobol.csv"
        console.print(table)


def _run_sobol(
    course: Any,
    ends: list[str],
    ps: Any,
    parameter: list[str] | None,
    n_base: int,
    seed: int,
    second_order: bool,
    workers: int,
    scheduler: str | None,
    chunk_size: int,
    quiet: bool,
) -> Any:

    from microneedling.engine.executor import map_chunks
    from microneedling.studies.sensitivity import sobol_indices

    mapper = functools.partial(
        map_chunks,
        workers=workers,
        scheduler=scheduler,
        progress=not quiet,
        label="Sobol runs",
        rate=len,
        rate_unit="runs",
    )
    return sobol_indices(
        course,
        ends,
        parameters=ps,
        names=list(parameter) if parameter else None,
        n_base=n_base,
        seed=seed,
        map_chunks=mapper,
        chunk_size=chunk_size,
        second_order=second_order,
    )


def sensitivity_command(
    course: CourseArgument,
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", metavar="DIR", help="Directory to create (written atomically)."
        ),
    ],
    endpoint: Annotated[
        list[str] | None,
        typer.Option(
            "--endpoint",
            "-e",
            metavar="E",
            help=(
                "End point, e.g. scar_depth:reduction@last+90 (repeatable). Default: collagen and "
                "downtime, plus the improvement of each condition in the course."
            ),
        ),
    ] = None,
    n_base: Annotated[
        int,
        typer.Option(
            "--n-base", metavar="N", help="Base sample size (power of two); runs = N*(D+2)."
        ),
    ] = 64,
    seed: Annotated[int, typer.Option("--seed", metavar="S", help="Seed of the design.")] = 0,
    parameter: Annotated[
        list[str] | None,
        typer.Option(
            "--parameter",
            "-p",
            metavar="NAME",
            help="Parameter to vary (repeatable). Default: every parameter with an interval "
            "that the course uses.",
        ),
    ] = None,
    second_order: Annotated[
        bool, typer.Option("--second-order", help="Also estimate pairwise indices (S2).")
    ] = False,
    workers: Annotated[
        int,
        typer.Option("--workers", metavar="N", help="Local Dask worker processes (0: in process)."),
    ] = 0,
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler", metavar="ADDRESS", help="Existing Dask scheduler, tcp://host:port."
        ),
    ] = None,
    chunk_size: Annotated[
        int, typer.Option("--chunk-size", metavar="N", help="Runs per batched solve.")
    ] = 512,
    top: Annotated[
        int, typer.Option("--top", metavar="N", help="Parameters shown per end point.")
    ] = 10,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace DIR if it holds an earlier run.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing on stdout.")] = False,
    parameter_set: ParameterSetOption = None,
    molecules: MoleculesOption = None,
) -> None:
    """Sobol indices (S1, ST with 95% CIs) of COURSE's end points over the parameter intervals;
    writes sobol.nc, sobol.csv, sobol.png, report.html and course.toml (and molecules.toml when the
    course names molecules of --molecules) into DIR."""
    from microneedling.engine.executor import validate_executor
    from microneedling.reports.sensitivity import save_indices_png, write_report
    from microneedling.studies.sensitivity import (
        default_endpoints,
        indices_table,
        noise_warnings,
    )

    t0 = time.perf_counter()
    if n_base < MIN_N_BASE:
        typer.echo(
            f"warning: --n-base {n_base}: Sobol indices from fewer than {MIN_N_BASE} base samples "
            "are rough (wide intervals, first-order indices may come out negative)",
            err=True,
        )
    with user_errors(), molecules_scope(molecules):
        try:
            validate_executor(workers, scheduler)
            out = check_out_dir(out, overwrite, "sensitivity")
            course_obj = load_course(course)
            ps = load_parameter_set(parameter_set)
            ends = list(endpoint) if endpoint else default_endpoints(course_obj)
            ds = _run_sobol(
                course_obj, ends, ps, parameter, n_base, seed, second_order, workers, scheduler,
                chunk_size, quiet,
            )  # fmt: skip
        except InputError as exc:  # bad option values: exit 2 like a bad course file
            fail(str(exc), EXIT_BAD_INPUT)
        t_run = time.perf_counter() - t0
        with atomic_directory(out, overwrite=overwrite, kind="sensitivity") as tmp:
            write_netcdf_atomic(ds, tmp / "sobol.nc")
            write_csv_atomic(indices_table(ds), tmp / "sobol.csv")
            save_indices_png(ds, tmp / "sobol.png")
            write_report(tmp, ds, top=top, warnings=noise_warnings(ds))
            write_text_atomic(course_obj.to_toml(), tmp / "course.toml")
            write_molecules([course_obj], tmp)
    for w in noise_warnings(ds):
        typer.echo(f"warning: {w}", err=True)
    if quiet:
        return
    console = make_console()
    _print_indices(ds, console, top)
    print_disclaimer(console)
    console.print(
        f"{ds.attrs['n_runs']} runs of {ds.attrs['n_factors']} parameters"
        + (
            ""
            if parameter
            else " (by default every parameter with a 90% interval that the solve "
            "looks up; `sources COURSE` lists them)"
        )
        + f" in {t_run:.1f} s; "
        f"wrote {', '.join(SENSITIVITY_FILES)} to {out}.",
        soft_wrap=True,
    )
    if ds.attrs["n_failed"]:
        typer.echo(
            f"warning: {ds.attrs['n_failed']} runs gave a non-finite end point; the indices of "
            "the affected end points are NaN",
            err=True,
        )
