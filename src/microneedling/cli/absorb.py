"""``microneedling absorb``: topical absorption per session, engine vs resolved unit cell.

    microneedling absorb COURSE --out DIR [--overwrite] [--resolved/--no-resolved] [--draws N]
        [--seed S] [--quiet] [--parameter-set DIR]

Writes into DIR, atomically: ``absorption.csv`` and ``absorption.json`` (one row per topical
session), ``figures/map_*.png`` and ``figures/curves_*.png`` (with ``--resolved``, one pair per
distinct case), ``report.html`` (self-contained, with the disclaimer) and ``course.toml`` (the
validated input). Heavy modules are imported inside the command (``microneedling.studies.absorb``
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
    CourseArgument,
    ParameterSetOption,
    check_out_dir,
    fail,
    load_course,
    load_parameter_set,
    make_console,
    print_disclaimer,
    user_errors,
    write_course,
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
            help="Also solve the resolved unit cell per session (maps, curves, difference).",
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
) -> None:
    """Topical absorption per session: amount per layer, intact skin, enhancement ratio.

    The engine's homogenised model (with intervals over parameter draws) and, with --resolved,
    the resolved unit cell for the same case (concentration map, cumulative curves, difference).
    Writes absorption.csv/json, figures/, report.html and course.toml into DIR."""
    from microneedling.reports import absorb as report
    from microneedling.studies import absorb

    t0 = time.perf_counter()
    with user_errors():
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
            figures: dict[str, list[Path]] = {}
            for rv in solved.values():
                c = rv.case
                stem = c.stem
                figures[f"{c.product}: {c.label}"] = [
                    report.plot_map(rv, tmp / "figures" / f"map_{stem}.png"),
                    report.plot_curves(rv, tmp / "figures" / f"curves_{stem}.png"),
                ]
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
            report.write_report(
                tmp, table, figures, course_obj.name, draws=draws,
                seed=course_obj.seed if seed is None else seed,
            )  # fmt: skip
    if quiet:
        return
    _print_table(table)
    print_disclaimer(make_console())
    make_console().print(f"Wrote {out} in {time.perf_counter() - t0:.1f} s.", soft_wrap=True)


def _print_table(table: Any) -> None:
    from rich.table import Table

    has_res = "resolved_absorbed_ug_cm2" in table.columns
    t = Table(title="Absorbed during the contact time [ug/cm^2] (engine: 10-90% interval)")
    for h in ("site", "#", "product", "engine absorbed", "intact", "ER"):
        t.add_column(h)
    if has_res:
        for h in ("resolved", "resolved ER", "diff %"):
            t.add_column(h)

    def iv(r: Any, col: str) -> str:
        v = f"{r[col]:.3g}"
        if f"{col}_low" in r:
            v += f" ({r[f'{col}_low']:.3g}-{r[f'{col}_high']:.3g})"
        return v

    for _, r in table.iterrows():
        cells = [
            str(r["site"]),
            str(r["session"]),
            str(r["product"]),
            iv(r, "absorbed_ug_cm2"),
            iv(r, "intact_ug_cm2"),
            f"{r['enhancement_ratio']:.3g}",
        ]
        if has_res:
            cells += [
                f"{r['resolved_absorbed_ug_cm2']:.3g}",
                f"{r['resolved_enhancement_ratio']:.3g}",
                f"{r['difference_pct']:+.1f}",
            ]
        t.add_row(*cells)
    make_console().print(t)
