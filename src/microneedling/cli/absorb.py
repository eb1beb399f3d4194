"""``microneedling absorb``: topical absorption per session, engine vs resolved unit cell.

    microneedling absorb COURSE --out DIR [--overwrite] [--resolved/--no-resolved] [--draws N]
        [--seed S] [--quiet] [--parameter-set DIR] [--molecules FILE ...]

Writes into DIR, atomically: ``absorption.csv`` and ``absorption.json`` (one row per topical
session), ``figures/map_*.png`` and ``figures/curves_*.png`` (with ``--resolved``, one pair per
distinct case), ``report.html`` (self-contained, with the disclaimer) and ``course.toml`` (the
validated input; with ``molecules.toml`` beside it when the course names user molecules of
``--molecules``). Heavy modules are imported inside the command (``microneedling.studies.absorb``
computes, ``microneedling.reports.absorb`` draws and writes the report).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from microneedling.about import DISCLAIMER
from microneedling.cli.common import (
    EXIT_BAD_INPUT,
    MAX_DRAWS,
    MIN_DRAWS_FOR_INTERVALS,
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
    write_course,
    write_molecules,
)
from microneedling.errors import InputError
from microneedling.io import atomic_directory, write_csv_atomic, write_text_atomic


def _json_value(v: Any) -> Any:
    """JSON-safe scalar: numpy → Python, NaN → null, ±inf → "inf"/"-inf"."""
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float):
        if math.isnan(v):
            return None
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
    return v


def absorb_command(
    course: CourseArgument,
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", metavar="DIR", help="Output directory to create (written atomically)."
        ),
    ],
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace DIR if it holds an earlier absorb run.")
    ] = False,
    resolved: Annotated[
        bool,
        typer.Option(
            "--resolved/--no-resolved",
            help="Solve the resolved unit cell beside the engine for every session (maps, "
            "curves, both models' amounts and ratios); on by default, --no-resolved skips it "
            "(faster: the engine only).",
        ),
    ] = True,
    draws: Annotated[
        int,
        typer.Option(
            "--draws", min=0, max=MAX_DRAWS, metavar="N", help="Parameter draws for the intervals."
        ),
    ] = 32,
    seed: Annotated[
        int | None,
        typer.Option("--seed", metavar="S", help="Seed of the draws (default: the course's)."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing on stdout.")] = False,
    parameter_set: ParameterSetOption = None,
    molecules: MoleculesOption = None,
) -> None:
    """Topical absorption per session: amount per layer, intact skin, enhancement ratio.

    The engine's homogenised model (with intervals over parameter draws) and, unless
    --no-resolved, the resolved unit cell for the same case (concentration map, cumulative curves,
    both models side by side). Writes absorption.csv/json, figures/, report.html and course.toml
    into DIR."""
    from microneedling.reports import absorb as report
    from microneedling.studies import absorb

    t0 = time.perf_counter()
    with user_errors(), molecules_scope(molecules):
        out = check_out_dir(out, overwrite, "absorb")
        course_obj = load_course(course)
        ps = load_parameter_set(parameter_set)

        try:
            table, solved = absorb.absorption_table(
                course_obj, ps, draws=draws, seed=seed, resolved=resolved
            )
        except InputError as exc:
            fail(f"{course}: {exc}", EXIT_BAD_INPUT)
        with atomic_directory(out, overwrite=overwrite, kind="absorb") as tmp:
            for rv in solved.values():  # the PNG figures, for print (report.html has charts)
                stem = rv.case.stem
                report.plot_map(rv, tmp / "figures" / f"map_{stem}.png")
                report.plot_curves(rv, tmp / "figures" / f"curves_{stem}.png")
            write_csv_atomic(table, tmp / "absorption.csv")
            records = [{k: _json_value(v) for k, v in r.items()} for r in table.to_dict("records")]
            meta = {
                "course": course_obj.name,
                "draws": draws,
                "units": "amounts in ug/cm^2 of skin; see docs/absorb.md for the columns",
                "disclaimer": DISCLAIMER,
                "sessions": records,
            }
            write_text_atomic(json.dumps(meta, indent=2), tmp / "absorption.json")
            write_course(course_obj, course, tmp)
            write_molecules([course_obj], tmp)
            report.write_report(
                tmp, table, solved, course_obj.name, draws=draws,
                seed=course_obj.seed if seed is None else seed,
            )  # fmt: skip
    if 0 < draws < MIN_DRAWS_FOR_INTERVALS:
        typer.echo(
            f"warning: --draws {draws}: a 10-90% interval from fewer than "
            f"{MIN_DRAWS_FOR_INTERVALS} parameter draws is rough, and the nominal value can fall "
            "outside it; use 32 or more",
            err=True,
        )
    if quiet:
        return
    _print_table(table)
    print_disclaimer(make_console())
    make_console().print(f"Wrote {out} in {time.perf_counter() - t0:.1f} s.", soft_wrap=True)


def _print_table(table: Any) -> None:
    """Per topical session: the amount absorbed and through intact skin, and their ratio (the
    enhancement ratio), from the engine and, with --resolved, from the resolved unit cell side by
    side; then what the comparison means."""
    from rich import box
    from rich.table import Table

    from microneedling.reports.format import clean_text, format_number

    has_res = "resolved_absorbed_ug_cm2" in table.columns
    t = Table(
        title="Absorbed during the contact time, µg/cm² of skin (engine with draws: their median "
        "(10–90% interval); value at the median parameters)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    for h in ("Site", "#", "Product", "Absorbed\nengine", "Intact skin\nengine", "Ratio\nengine"):
        t.add_column(h, justify="left" if h in ("Site", "Product") else "right", no_wrap=True)
    if has_res:
        for h in ("Absorbed\nresolved", "Intact skin\nresolved", "Ratio\nresolved", "Amount\ndiff"):
            t.add_column(h, justify="right", no_wrap=True)

    def iv(r: Any, col: str) -> str:
        if f"{col}_low" not in r:
            return format_number(r[col])
        med = r.get(f"{col}_median", r[col])
        return (f"{format_number(med)} ({format_number(r[f'{col}_low'])}–"
                f"{format_number(r[f'{col}_high'])}); {format_number(r[col])}")  # fmt: skip

    def ratio(x: Any) -> str:
        return "∞ (no intact-skin path)" if x == float("inf") else f"{format_number(x)}×"

    for _, r in table.iterrows():
        cells = [
            clean_text(r["site"]),
            str(r["session"]),
            clean_text(r["product"]),
            iv(r, "absorbed_ug_cm2"),
            iv(r, "intact_ug_cm2"),
            ratio(r["enhancement_ratio"]),
        ]
        if has_res:
            cells += [
                format_number(r["resolved_absorbed_ug_cm2"]),
                format_number(r["resolved_intact_ug_cm2"]),
                ratio(r["resolved_enhancement_ratio"]),
                f"{r['difference_pct']:+.1f}%",
            ]
        t.add_row(*cells)
    console = make_console()
    console.print(t)
    console.print(
        "Ratio = absorbed with channels / absorbed through intact skin (enhancement ratio)."
        + (
            " Amount diff = engine vs resolved amount absorbed with channels, the quantity the "
            "engine passes on to healing and pigment. The ratios of the two models can differ far "
            "more than the amounts: the ratio divides by the intact-skin amount, which is small "
            "and which the two models compute differently, so a small absolute difference there "
            "is a large difference in the ratio."
            if has_res
            else ""
        ),
        soft_wrap=False,
    )
