"""``microneedling sources RUN``: the references a run depended on (and its parameters)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from microneedling.about import DISCLAIMER
from microneedling.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_REFUSED,
    MoleculesOption,
    ParameterSetOption,
    fail,
    load_course,
    load_parameter_set,
    make_console,
    molecules_scope,
    parameter_table,
    run_simulation,
    user_errors,
)
from microneedling.errors import MicroneedlingError
from microneedling.parameters.parameter_set import load_parameters, user_note

if TYPE_CHECKING:  # pragma: no cover
    from microneedling.engine.result import Result
    from microneedling.parameters.parameter_set import ParameterSet


def _load_run(run: Path, parameters: ParameterSet | None) -> Result:
    """A Result from a run directory, a result.nc file, or a course file (simulated now)."""

    if run.is_dir():
        nc = run / "result.nc"
        if not nc.is_file():
            fail(f"{run}: no result.nc here (not a run directory)", EXIT_BAD_INPUT)
        return _read_result(nc)
    if run.is_file() and run.suffix.lower() in (".nc", ".nc4", ".netcdf"):
        return _read_result(run)
    if not run.exists():
        fail(f"{run}: no such run directory or course file", EXIT_BAD_INPUT)
    return run_simulation(load_course(run), None, parameters)


def _read_result(path: Path) -> Result:

    from microneedling.engine.result import Result

    try:
        return Result.from_netcdf(path)
    except (OSError, ValueError, KeyError) as exc:
        fail(f"{path}: cannot read the result ({type(exc).__name__}: {exc})", EXIT_REFUSED)


def _lookup_set(result: Result, explicit: ParameterSet | None) -> tuple[ParameterSet | None, str]:
    """The parameter set used to describe a run's parameters, and a note if it may differ."""

    ps = explicit
    if ps is None:
        try:
            ps = load_parameters()
        except MicroneedlingError:
            return None, "note: the shipped parameter set could not be loaded"
    run_hash = result.parameter_set_hash
    if run_hash and run_hash != ps.hash:
        return ps, (
            f"note: the run used parameter set hash {run_hash}; details below come from "
            f"'{ps.label}' (hash {ps.hash}), which differs"
        )
    return ps, ""


def _parameter_rows(result: Result, ps: ParameterSet | None) -> list[dict[str, Any]]:
    """name/value/units/low/high/kind/sources of each parameter the run used: the run's own
    record, else looked up by name in ``ps``."""

    if result.records_parameters:
        return [dataclasses.asdict(r) for r in result.parameters_used]
    rows = []
    for name in result.parameter_names:
        p = ps.parameters.get(name) if ps is not None else None
        rows.append(
            {
                "name": name,
                "value": None,
                "units": "?",
                "low": None,
                "high": None,
                "kind": "?",
                "sources": [],
            }
            if p is None
            else {
                "name": name,
                "value": p.value,
                "units": p.units,
                "low": p.low,
                "high": p.high,
                "kind": p.kind,
                "sources": list(p.sources),
            }
        )
    return rows


def _count_note(result: Result, ps: ParameterSet | None) -> str:
    """Why other places report other numbers of parameters for the same course: this run's
    lookups, those with an interval, and those ``sensitivity`` varies by default."""
    rows = (
        [dataclasses.asdict(r) for r in result.parameters_used] if result.records_parameters else []
    )
    if not rows and ps is not None:
        rows = [{"low": ps.parameters[n].low} for n in result.parameter_names if n in ps.parameters]
    if not rows:
        return "(the parameters the run looked up)"
    fixed = sum(1 for r in rows if r.get("low") is None)
    text = (
        f"({len(rows)} = every parameter this run looked up, the ensemble draws included; "
        f"{len(rows) - fixed} have a 90% interval and are sampled by the draws, {fixed} are fixed "
        "constants"
    )
    try:
        course = result.course
    except MicroneedlingError:  # a run of another version: its course no longer validates
        course = None
    n = None
    if course is not None and ps is not None:
        from microneedling.studies.sensitivity import sensitive_names

        try:
            n = len(sensitive_names(course, ps))
        except MicroneedlingError:  # a set that cannot simulate this course (a partial set)
            n = None
    if n is not None:
        text += (
            f"; `sensitivity` varies {n} by default: those with an interval that the healing "
            "solve itself looks up, not those read only to label the results"
        )
    return text + ")"


def _print_estimates(rows: list[dict[str, Any]], ps: ParameterSet | None) -> None:
    """Where a number is the developers' own (kind estimate), why: its note (from the run's record
    or the parameter set), without remarks meant for the developers."""
    from microneedling.reports.format import clean_text

    why = []
    for r in rows:
        if r.get("kind") != "estimate":
            continue
        p = ps.parameters.get(str(r["name"])) if ps is not None else None
        note = str(r.get("note") or (p.note if p is not None else ""))
        if note:
            why.append((str(r["name"]), clean_text(user_note(note))))
    if why:
        typer.echo(f"Why: the {len(why)} parameter(s) of kind 'estimate' are our own numbers:")
        for name, text in why:
            typer.echo(f"  {name}: {text}")


def sources_command(
    run: Annotated[
        Path,
        typer.Argument(
            metavar="RUN",
            show_default=False,
            help="A run directory (with result.nc) or a course file.",
        ),
    ],
    parameters: Annotated[
        bool, typer.Option("--parameters", help="Also list the parameters the run used.")
    ] = False,
    parameter_set: ParameterSetOption = None,
    molecules: MoleculesOption = None,
) -> None:
    """List the references a run depended on, and how many of its parameters cite each."""
    from microneedling.reports.format import clean_text
    from microneedling.reports.run import reference_usage

    with user_errors(), molecules_scope(molecules):
        explicit = load_parameter_set(parameter_set)
        result = _load_run(run, explicit)
        ps, note = _lookup_set(result, explicit)
        refs = result.sources()
        usage = reference_usage(result, ps)
        rows = _parameter_rows(result, ps) if parameters else []
    used = result.parameter_names
    name = clean_text(result.course_name or str(run))
    typer.echo(
        f"References used by {name!r}: {len(refs)} reference(s) behind {len(used)} parameter(s) "
        f"(parameter set {result.parameter_set_label or '?'}, "
        f"hash {result.parameter_set_hash or '?'})"
    )
    typer.echo(_count_note(result, ps))
    own_record = result.records_parameters
    missing = [n for n in used if ps is not None and n not in ps.parameters]
    # counts are exact from the run's own record or from the very set it used; else best effort
    trusted = own_record or (ps is not None and not note and not missing)
    if note and not own_record:
        typer.echo(note)
    if missing and not own_record:
        typer.echo(
            f"note: {len(missing)} of the run's parameters are not in that set "
            f"(e.g. {missing[0]}); their sources are not counted"
        )
    width = len(str(len(refs)))
    for i, ref in enumerate(refs, start=1):
        typer.echo(f"{i:>{width}}. [{ref.key}] {clean_text(ref.user_citation)}")
        pad = " " * (width + 2)
        if ref.user_url:
            typer.echo(f"{pad}{clean_text(ref.user_url)}")
        names = usage.get(ref.key)
        if names is None and not trusted:
            typer.echo(
                f"{pad}cited by: unknown (the parameter set that describes this run is not "
                "available; try --parameter-set DIR)"
            )
        elif names is None:
            typer.echo(f"{pad}cited by 0 parameter(s)")
        else:
            shown = ", ".join(names[:8]) + (f", … (+{len(names) - 8})" if len(names) > 8 else "")
            typer.echo(f"{pad}cited by {len(names)} parameter(s): {shown}")
    if not refs:
        typer.echo("  (this run recorded no references)")
    if parameters:
        make_console().print(parameter_table(rows, f"Parameters used ({len(rows)})"))
        _print_estimates(rows, ps)
    typer.echo(f"NOTE: {DISCLAIMER}")
