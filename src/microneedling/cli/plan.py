"""``microneedling plan PATIENT.toml --out DIR``: screen, search, re-simulate, report.

Exit codes follow :mod:`microneedling.cli`: 2 for a patient file that fails validation or a bad
option; 1 for a refusal (an absolute contraindication, no plan within the limits, DIR exists).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Annotated

import typer

from microneedling.cli.common import (
    EXIT_BAD_INPUT,
    MAX_DRAWS,
    check_out_dir,
    fail,
    make_console,
    one_line,
    print_disclaimer,
    units_text,
    user_errors,
    writing,
)

__all__ = ["plan_command"]


_ENDPOINT = re.compile(
    r"\b[a-z_]+(?:\.[a-z_]+)?(?::[a-z_]+)?@(?:last\+)?[0-9.]+|\b[a-z_]+:[a-z_]+\b"
)


def _words(line: str) -> str:
    """End-point codes in a line (``melanin_index:reduction@last+90``) read as words."""
    from microneedling.reports.format import endpoint_label

    return _ENDPOINT.sub(lambda m: endpoint_label(m.group()), line)


def plan_command(
    patient: Annotated[
        Path,
        typer.Argument(metavar="PATIENT", help="Patient file (TOML).", show_default=False),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", metavar="DIR", help="Plan directory to create (written atomically)."
        ),
    ],
    max_downtime_days: Annotated[
        float | None,
        typer.Option(
            "--max-downtime-days",
            min=0.0,
            metavar="N",
            help="Override limits.max_downtime_days_per_session (days).",
        ),
    ] = None,
    max_total_downtime_days: Annotated[
        float | None,
        typer.Option("--max-total-downtime-days", min=0.0, metavar="N", help="Total downtime cap."),
    ] = None,
    max_sessions: Annotated[
        int | None,
        typer.Option("--max-sessions", min=1, metavar="N", help="Override limits.max_sessions."),
    ] = None,
    max_pih_risk: Annotated[
        float | None,
        typer.Option(
            "--max-pih-risk",
            min=0.0,
            max=1.0,
            metavar="P",
            help="Override the PIH constraint (default planning.max_pih_risk).",
        ),
    ] = None,
    pih_ceiling_on: Annotated[
        str,
        typer.Option(
            "--pih-ceiling-on",
            metavar="nominal|p90",
            help="Apply the PIH limit to the nominal worst-session risk (default) or to its 90th "
            "percentile over the draws (stricter: the recommended plan is the best Pareto plan "
            "whose 90th percentile is within the limit).",
        ),
    ] = "nominal",
    draws: Annotated[
        int,
        typer.Option(
            "--draws", min=0, max=MAX_DRAWS, metavar="N", help="Parameter draws for the intervals."
        ),
    ] = 32,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace DIR if it holds an earlier plan.")
    ] = False,
    figures: Annotated[
        bool, typer.Option("--figures/--no-figures", help="Write the Pareto plot.")
    ] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing on stdout.")] = False,
) -> None:
    """Plan a course for PATIENT: screening, search, Pareto set; writes course.toml, pareto.png,
    report.html, pareto.csv, predictions.csv and screening.txt into DIR."""
    from microneedling.course.patient import PatientFile
    from microneedling.reports.format import (
        clean_text,
        endpoint_label,
        format_interval,
        format_number,
    )
    from microneedling.reports.plan import write_plan_directory
    from microneedling.studies.planning.search import (
        predict,
        search,
        with_pih_ceiling_on_percentile,
    )

    t0 = time.perf_counter()
    with user_errors():
        out = check_out_dir(out, overwrite, "plan")
        if not patient.is_file():
            fail(f"{patient}: patient file not found", EXIT_BAD_INPUT)
        pf = PatientFile.from_toml(patient).with_limits(
            max_downtime_days_per_session=max_downtime_days,
            max_total_downtime_days=max_total_downtime_days,
            max_sessions=max_sessions,
            max_pih_risk=max_pih_risk,
        )
        if pih_ceiling_on not in ("nominal", "p90"):
            fail(f"--pih-ceiling-on: got {pih_ceiling_on!r}; allowed: nominal, p90", EXIT_BAD_INPUT)
        if pih_ceiling_on == "p90" and draws < 8:
            fail(
                f"--draws: got {draws}; allowed: at least 8 with --pih-ceiling-on p90 (the "
                "percentile is taken over the draws)",
                EXIT_BAD_INPUT,
            )
        result = search(pf)
        if pih_ceiling_on == "p90":
            result = with_pih_ceiling_on_percentile(result, draws=draws)
        preds = predict(result.recommended.course, pf, draws=draws)
        with writing("plan"):
            written = write_plan_directory(result, preds, out, overwrite=overwrite, figures=figures)
    for w in result.warnings():
        typer.echo(f"warning: {one_line(w)}", err=True)
    if quiet:
        return
    console = make_console()
    rec = result.recommended
    console.print(f"Recommended plan — {clean_text(pf.name)}", style="bold")
    console.print(rec.summary(), soft_wrap=True)
    pih_hi = max(
        (r["high"] for r in preds if r["endpoint"] == "pih_risk" and r["high"] == r["high"]),
        default=float("nan"),
    )
    upper = f", {pih_hi:.3f} at the 90th percentile of {draws} draws" if draws else ""
    on = "its 90th percentile" if pih_ceiling_on == "p90" else "the nominal value"
    console.print(
        f"downtime {rec.total_downtime_days:.1f} d in total (worst session "
        f"{max(rec.downtime_per_session):.1f} d); worst-session PIH risk {rec.max_pih_risk:.3f} "
        f"nominal{upper} (limit {result.pih_limit:g} on {on}; --pih-ceiling-on p90 applies it "
        "to the 90th percentile)",
        soft_wrap=True,
    )
    from rich import box
    from rich.table import Table

    table = Table(
        title=f"Predicted end points (value [10–90%], {draws} draws)", box=box.SIMPLE_HEAD
    )
    for col in ("Site", "End point", "Value [10–90%]", "Units"):
        table.add_column(col, no_wrap=col != "End point")
    for r in preds:
        iv = format_interval(r["low"], r["high"])
        cell = f"{format_number(r['value'])} [{iv}]" if iv else format_number(r["value"])
        variable = str(r["endpoint"]).split(":")[0].split("@")[0].split(".")[0]
        table.add_row(
            r["site"], endpoint_label(r["endpoint"]), cell, units_text(variable, str(r["units"]))
        )
    console.print(table)
    console.print("Why:", style="bold")
    for line in result.explanation:
        console.print(f"  - {_words(line)}", soft_wrap=True)
    print_disclaimer(console)
    console.print(
        f"Pareto set: {len(result.pareto)} plans ({result.n_simulated} candidates simulated, "
        f"{result.n_plans} feasible plans). Wrote {len(written)} files to {out} in "
        f"{time.perf_counter() - t0:.1f} s.",
        soft_wrap=True,
    )
