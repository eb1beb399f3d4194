"""``microneedling simulate COURSE --out DIR``: one course, its end points and a run directory."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from microneedling.cli.common import (
    MAX_DRAWS,
    CourseArgument,
    MoleculesOption,
    ParameterSetOption,
    check_out_dir,
    collector_paused,
    load_course,
    load_parameter_set,
    make_console,
    molecules_scope,
    one_line,
    print_disclaimer,
    run_simulation,
    units_text,
    user_errors,
    write_course,
    write_molecules,
)
from microneedling.io import atomic_directory, write_csv_atomic

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from rich.console import Console

    from microneedling.engine.result import Result


def _write_run(
    result: Result,
    table: pd.DataFrame,
    course: Any,
    source: Path,
    out: Path,
    overwrite: bool,
    figures: bool,
) -> list[Path]:
    """Write every output into a temporary sibling of ``out``, then move it into place
    (``table``: ``result.endpoints()``)."""
    from microneedling.reports.run import write_figures, write_html_report

    with atomic_directory(out, overwrite=overwrite, kind="simulate") as tmp:
        written = [result.to_netcdf(tmp / "result.nc")]
        written.append(write_csv_atomic(table, tmp / "endpoints.csv"))
        written.append(write_course(course, source, tmp))
        mols = write_molecules([course], tmp)  # the user molecules it names (--molecules)
        if mols is not None:
            written.append(mols)
        figs = write_figures(result, tmp / "figures") if figures else []
        written.extend(figs)
        written.append(write_html_report(result, tmp, figs, endpoints=table))
    return [out / p.relative_to(tmp) for p in written]


def _cell(value: float, low: float, high: float) -> str:

    from microneedling.reports.format import format_interval, format_number

    iv = format_interval(low, high)
    return f"{format_number(value)} [{iv}]" if iv else format_number(value)


def _baselines(result: Result, layer: str = "papillary_dermis") -> dict[tuple[str, str], float]:
    """{(site, variable): value before the first session} of the time-resolved end points.

    Read from the variables' arrays (first time, first patient, ``layer``) by position: a
    DataArray selection per variable and site cost ~25 ms of every command."""
    ds = result.dataset
    sites = [str(s) for s in ds["site"].values]
    layer_at = int(ds.indexes["layer"].get_loc(layer)) if "layer" in ds.indexes else None
    out: dict[tuple[str, str], float] = {}
    for name in ds.data_vars:
        var = ds.variables[name]
        if (
            "time" not in var.dims
            or "site" not in var.dims
            or str(name).endswith(("_low", "_high"))
        ):
            continue
        at: dict[str, int] = {"time": 0}
        if "patient" in var.dims:
            at["patient"] = 0
        if "layer" in var.dims:
            if layer_at is None:
                raise KeyError(f"{name}: no 'layer' coordinate to select {layer!r} from")
            at["layer"] = layer_at
        first = var.isel(at).transpose("site", ...).values
        for i, site in enumerate(sites):
            out[(site, str(name))] = float(first[i])
    return out


def _read_out_head(day: float, last: float) -> str:
    """``day 119`` and, below it, ``last + 35 d`` (how long after the last session)."""
    from microneedling.reports.format import format_day

    head = f"day {format_day(day)}"
    if last == last and day >= last:  # not NaN
        head += f"\n(last +{format_day(day - last)} d)"
    return head


def _print_endpoints(result: Result, console: Console, df: pd.DataFrame | None = None) -> None:
    """One table per site: time-resolved end points with their baseline (before the first session)
    and their value at each read-out day, then course end points.

    On a terminal too narrow for one column per read-out day, the table is printed long (one row
    per end point and day) so that no value is ever cut.
    """
    from rich import box
    from rich.table import Table

    from microneedling.engine.variables import by_name
    from microneedling.reports.format import clean_text, format_day, format_number

    if df is None:
        df = result.endpoints()
    name = clean_text(result.course_name or "course")
    if df.empty:
        console.print(f"{name}: no end points apply to this course.")
        return
    known = by_name()
    multi = df["patient"].nunique() > 1
    last = float(result.dataset["session_day"].max(skipna=True))
    base = _baselines(result)
    console.print(
        f"End points — {name}  (last session on day {format_day(last)}; value [10–90% interval])",
        style="bold",
    )
    for (patient, site), g in df.groupby(["patient", "site"], sort=False):
        title = f"{patient} · {site}" if multi else str(site)
        timed = g[g["time_days"].notna()]
        times = sorted(float(t) for t in timed["time_days"].unique())
        body: list[list[str]] = []
        for label, rows in timed.groupby("endpoint", sort=False):
            cells = {float(r.time_days): _cell(r.value, r.low, r.high) for r in rows.itertuples()}
            var = str(rows["variable"].iloc[0])
            units = units_text(var, str(rows["units"].iloc[0]))
            # a change (%) is 0 at baseline by definition: only absolute quantities show one
            b0 = "" if units == "%" else format_number(base.get((str(site), var), float("nan")))
            body.append([str(label), units, b0, *[cells.get(t, "") for t in times]])
        n_timed = len(body)
        for r in g[g["time_days"].isna()].itertuples():
            word = known[str(r.variable)].summary_word if str(r.variable) in known else ""
            label = f"{r.endpoint} ({word or 'course'})"
            vals = [_cell(r.value, r.low, r.high)] + [""] * (max(len(times), 1) - 1)
            body.append([label, units_text(str(r.variable), str(r.units)), "", *vals])
        heads = ["baseline", *[_read_out_head(t, last) for t in times]] if times else ["", "value"]
        widths = [
            max([max(len(x) for x in h.split("\n"))] + [len(b[j]) for b in body])
            for j, h in enumerate(heads, start=2)
        ]
        units_w = max(len(b[1]) for b in body)
        if 24 + units_w + sum(widths) + 3 * (len(heads) + 2) > console.width:
            console.print(_long_endpoint_table(title, body, heads, n_timed))
            continue
        table = Table(title=title, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD)
        # values and units are never wrapped or cut; the end-point label wraps when space is short
        table.add_column("End point", max_width=48, overflow="fold")
        table.add_column("Units", no_wrap=True, min_width=units_w)
        for head, width in zip(heads, widths, strict=True):
            table.add_column(head, justify="right", no_wrap=True, min_width=width)
        for i, row in enumerate(body):
            if i == n_timed and 0 < n_timed:
                table.add_section()
            table.add_row(*row)
        console.print(table)


def _long_endpoint_table(title: str, body: list[list[str]], heads: list[str], n_timed: int) -> Any:
    """The end-point table as one row per (end point, read-out): fits narrow terminals."""
    from rich import box
    from rich.table import Table

    table = Table(title=title, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD)
    table.add_column("End point", overflow="fold", min_width=16)
    table.add_column("When", no_wrap=True)
    table.add_column("Value [10–90%]", justify="right", no_wrap=True)
    table.add_column("Units", no_wrap=True)
    for i, row in enumerate(body):
        if i == n_timed and 0 < n_timed:
            table.add_section()
        if i >= n_timed:
            table.add_row(row[0], "course", row[3], row[1])
            continue
        first = True  # the label goes on the end point's first printed row (a change in %
        for k, head in enumerate(heads):  # has no baseline cell: its first row is a day's)
            if row[2 + k]:
                when = head.replace("\n", " ")
                table.add_row(row[0] if first else "", when, row[2 + k], row[1])
                first = False
    return table


def simulate_command(
    course: CourseArgument,
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", metavar="DIR", help="Run directory to create (written atomically)."
        ),
    ],
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace DIR if it holds an earlier run.")
    ] = False,
    draws: Annotated[
        int | None,
        typer.Option(
            "--draws",
            min=0,
            max=MAX_DRAWS,
            metavar="N",
            help="Parameter draws for the uncertainty bands (default 32; 0: nominal only).",
        ),
    ] = None,
    figures: Annotated[
        bool,
        typer.Option(
            "--figures/--no-figures", help="Write PNG figures (and embed them in the report)."
        ),
    ] = True,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet",
            "-q",
            help="Print nothing on stdout (warnings and errors still go to stderr).",
        ),
    ] = False,
    parameter_set: ParameterSetOption = None,
    molecules: MoleculesOption = None,
) -> None:
    """Simulate COURSE and write result.nc, endpoints.csv, report.html, figures/ and course.toml into DIR
    (and molecules.toml when the course names molecules of --molecules)."""
    t0 = time.perf_counter()
    with user_errors(), molecules_scope(molecules):
        out = check_out_dir(out, overwrite, "simulate")
        with collector_paused():  # the imports and the solve make only long-lived objects
            course_obj = load_course(course)
            ps = load_parameter_set(parameter_set)
            result = run_simulation(course_obj, draws, ps)
        t_sim = time.perf_counter() - t0
        # the outputs: their garbage is a few figures' reference cycles (~200 collections of
        # 0.1-0.16 s otherwise), left to the end of the command
        with collector_paused():
            table = result.endpoints()  # one table for the CSV, the report and the terminal
            written = _write_run(result, table, course_obj, course, out, overwrite, figures)
    for w in result.warnings:
        typer.echo(f"warning: {one_line(w)}", err=True)
    if quiet:
        return
    console = make_console()
    _print_endpoints(result, console, table)
    print_disclaimer(console)
    total = time.perf_counter() - t0
    console.print(
        f"Wrote {len(written)} files to {out} in {total:.1f} s "
        f"(simulation {t_sim:.1f} s, output {total - t_sim:.1f} s).",
        soft_wrap=True,
    )
