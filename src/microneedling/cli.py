"""The ``microneedling`` command: a thin shell over the library.

    microneedling simulate COURSE --out DIR [--overwrite] [--draws N] [--no-figures] [--quiet]
    microneedling sources RUN [--parameters]
    microneedling parameters [--group G]
    microneedling --version

and, each in its own module ``cli_<name>.py``: ``absorb`` (cli_absorb), ``plan`` (cli_plan),
``trial`` (cli_trial), ``sensitivity`` and ``sbml`` (cli_sensitivity), ``calibrate`` and ``validate``
(cli_calibrate).

Exit codes: 0 success; 1 a refusal by the package (``MicroneedlingError``: output exists, unknown
parameter, ...); 2 bad input (a course file that fails validation, a missing file, a bad option);
130 interrupted. User errors print one line, ``error: <reason>``, on stderr and never a traceback.

Only ``typer`` and the light modules of this package are imported at start-up; numpy, xarray,
matplotlib and the physics are imported inside the commands so ``microneedling --help`` is fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from . import DISCLAIMER, __version__
from .errors import CourseValidationError, MicroneedlingError

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console

    from .parameters import ParameterSet
    from .result import Result

__all__ = ["app", "main"]

EXIT_REFUSED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

app = typer.Typer(
    name="microneedling",
    help=(
        "In-silico microneedling (collagen induction therapy): simulate a course, plan one for a "
        "patient, study topical absorption, run virtual trials and sensitivity analyses, calibrate "
        "and validate the model, and list the sources behind every number. " + DISCLAIMER
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


# --------------------------------------------------------------------------- plumbing
def _one_line(text: str) -> str:
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f"error: {_one_line(message)}", err=True)
    raise typer.Exit(code)


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """Turn the package's refusals into one line on stderr and an exit code (no traceback)."""
    try:
        yield
    except CourseValidationError as exc:
        _fail(exc.one_line(), EXIT_BAD_INPUT)
    except MicroneedlingError as exc:
        _fail(str(exc) or type(exc).__name__, EXIT_REFUSED)
    except KeyboardInterrupt:
        _fail("interrupted; no output was written", EXIT_INTERRUPTED)


def _console(stderr: bool = False) -> Console:
    """A rich console without markup (user text may contain brackets); wide when not a terminal."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None
    if not stream.isatty() and "COLUMNS" not in os.environ:
        width = 132
    return Console(stderr=stderr, width=width, markup=False, highlight=False, emoji=False)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"microneedling {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            help="Print the version and exit.",
            callback=_version_callback,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """In-silico microneedling: a research and planning aid, never a diagnosis."""


def _load_course(path: Path) -> Any:
    """Validate a course file; a missing/unreadable file is bad input (exit 2)."""
    if not path.exists():
        _fail(f"{path}: course file not found", EXIT_BAD_INPUT)
    if not path.is_file():
        _fail(f"{path}: not a file", EXIT_BAD_INPUT)
    from .course import Course

    try:
        return Course.from_file(path)
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"{path}: cannot read ({exc})", EXIT_BAD_INPUT)


def _load_parameter_set(directory: Path | None) -> ParameterSet | None:
    if directory is None:
        return None
    if not directory.is_dir():
        _fail(f"--parameter-set: {directory} is not a directory", EXIT_BAD_INPUT)
    from .parameters import load_parameters

    return load_parameters(directory)


def _run_simulation(course: Any, draws: int | None, parameters: ParameterSet | None) -> Result:
    """Call ``simulate`` with only the arguments its signature accepts."""
    import inspect

    from .simulation import simulate

    sig = inspect.signature(simulate).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.values())
    kwargs: dict[str, Any] = {}
    if draws is not None:
        if "draws" in sig or takes_any:
            kwargs["draws"] = draws
        else:
            typer.echo(
                "warning: this version of simulate() takes no 'draws'; --draws ignored", err=True
            )
    if parameters is not None:
        if "parameters" in sig or takes_any:
            kwargs["parameters"] = parameters
        else:
            _fail("this version of simulate() takes no parameter set", EXIT_REFUSED)
    return simulate(course, **kwargs)


def _check_out_dir(
    out: Path, overwrite: bool, marker: str = "result.nc", kind: str = "microneedling run"
) -> None:
    """Refuse early (before any work) when ``out`` cannot be written.

    ``--overwrite`` replaces only an empty directory or one that holds ``marker`` (the file every
    run directory of that ``kind`` has), never an unrelated directory.
    """
    from .io import OutputExistsError

    if not (out.exists() or out.is_symlink()):
        return
    if out.is_symlink() or not out.is_dir():
        raise OutputExistsError(f"{out} exists and is not a directory; choose another --out")
    if not overwrite:
        raise OutputExistsError(f"{out} already exists; use --overwrite to replace it")
    if any(out.iterdir()) and not (out / marker).is_file():
        raise OutputExistsError(
            f"refusing to replace {out}: it is not empty and holds no {marker}, so it does not "
            f"look like a {kind} directory"
        )


def _write_course(course: Any, source: Path, out: Path) -> Path:
    """The validated input (``course.to_toml()`` when the Course offers it, else the file)."""
    from .io import write_bytes_atomic, write_text_atomic

    to_toml = getattr(course, "to_toml", None)
    if callable(to_toml):
        return write_text_atomic(str(to_toml()), out / "course.toml")
    suffix = source.suffix.lower() if source.suffix.lower() in (".toml", ".json") else ".toml"
    return write_bytes_atomic(source.read_bytes(), out / f"course{suffix}")


def _write_run(
    result: Result, course: Any, source: Path, out: Path, overwrite: bool, figures: bool
) -> list[Path]:
    """Write every output into a temporary sibling of ``out``, then move it into place."""
    from .io import atomic_directory, write_csv_atomic
    from .report import write_figures, write_html_report

    with atomic_directory(out, overwrite=overwrite) as tmp:
        written = [result.to_netcdf(tmp / "result.nc")]
        written.append(write_csv_atomic(result.endpoints(), tmp / "endpoints.csv"))
        written.append(_write_course(course, source, tmp))
        figs = write_figures(result, tmp / "figures") if figures else []
        written.extend(figs)
        written.append(write_html_report(result, tmp, figs))
    return [out / p.relative_to(tmp) for p in written]


def _warnings_of(result: Result) -> list[str]:
    from .report import _warnings

    return _warnings(result.dataset)


def _cell(value: float, low: float, high: float) -> str:
    from .report import format_interval, format_number

    iv = format_interval(low, high)
    return f"{format_number(value)} [{iv}]" if iv else format_number(value)


def _print_endpoints(result: Result, console: Console) -> None:
    """One table per site: time-resolved end points by read-out day, then course end points.

    On a terminal too narrow for one column per read-out day, the table is printed long (one row
    per end point and day) so that no value is ever cut.
    """
    from rich import box
    from rich.table import Table

    from .report import format_day, pretty_units
    from .result import ENDPOINTS

    df = result.endpoints()
    name = str(result.dataset.attrs.get("course_name", "")) or "course"
    if df.empty:
        console.print(f"{name}: no end points apply to this course.")
        return
    how = {ep.variable: ep.reduce for ep in ENDPOINTS}
    reduce_words = {"sum": "total", "max": "worst session", "mean": "per session"}
    multi = df["patient"].nunique() > 1
    last = float(result.dataset["session_day"].max(skipna=True))
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
            units = pretty_units(str(rows["units"].iloc[0]))
            body.append([str(label), units, *[cells.get(t, "") for t in times]])
        n_timed = len(body)
        for r in g[g["time_days"].isna()].itertuples():
            label = f"{r.endpoint} ({reduce_words.get(how.get(str(r.variable), ''), 'course')})"
            vals = [_cell(r.value, r.low, r.high)] + [""] * (max(len(times), 1) - 1)
            body.append([label, pretty_units(str(r.units)), *vals])
        heads = [f"day {format_day(t)}" for t in times] or ["value"]
        widths = [max([len(h)] + [len(b[j]) for b in body]) for j, h in enumerate(heads, start=2)]
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
    table.add_column("End point", overflow="fold")
    table.add_column("When", no_wrap=True)
    table.add_column("Value [10–90%]", justify="right", no_wrap=True)
    table.add_column("Units", no_wrap=True)
    for i, row in enumerate(body):
        if i == n_timed and 0 < n_timed:
            table.add_section()
        if i >= n_timed:
            table.add_row(row[0], "course", row[2], row[1])
            continue
        for k, head in enumerate(heads):
            if row[2 + k]:
                table.add_row(row[0] if k == 0 else "", head, row[2 + k], row[1])
    return table


def _print_disclaimer(console: Console) -> None:
    console.print(f"NOTE: {DISCLAIMER}", style="bold yellow", soft_wrap=True)


# --------------------------------------------------------------------------- commands
CourseArgument = Annotated[
    Path,
    typer.Argument(metavar="COURSE", help="Course file (TOML or JSON).", show_default=False),
]
ParameterSetOption = Annotated[
    Path | None,
    typer.Option(
        "--parameter-set",
        metavar="DIR",
        help="A parameter directory to use instead of the shipped set.",
    ),
]


@app.command("simulate")
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
            "--draws", min=0, metavar="N", help="Parameter draws for the uncertainty bands."
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
) -> None:
    """Simulate COURSE and write result.nc, endpoints.csv, report.html, figures/ and course.toml into DIR."""
    t0 = time.perf_counter()
    with _user_errors():
        _check_out_dir(out, overwrite)
        course_obj = _load_course(course)
        ps = _load_parameter_set(parameter_set)
        result = _run_simulation(course_obj, draws, ps)
        t_sim = time.perf_counter() - t0
        written = _write_run(result, course_obj, course, out, overwrite, figures)
    for w in _warnings_of(result):
        typer.echo(f"warning: {_one_line(w)}", err=True)
    if quiet:
        return
    console = _console()
    _print_endpoints(result, console)
    _print_disclaimer(console)
    total = time.perf_counter() - t0
    console.print(
        f"Wrote {len(written)} files to {out} in {total:.1f} s "
        f"(simulation {t_sim:.1f} s, output {total - t_sim:.1f} s).",
        soft_wrap=True,
    )


def _load_run(run: Path, parameters: ParameterSet | None) -> Result:
    """A Result from a run directory, a result.nc file, or a course file (simulated now)."""
    if run.is_dir():
        nc = run / "result.nc"
        if not nc.is_file():
            _fail(f"{run}: no result.nc here (not a run directory)", EXIT_BAD_INPUT)
        return _read_result(nc)
    if run.is_file() and run.suffix.lower() in (".nc", ".nc4", ".netcdf"):
        return _read_result(run)
    if not run.exists():
        _fail(f"{run}: no such run directory or course file", EXIT_BAD_INPUT)
    return _run_simulation(_load_course(run), None, parameters)


def _read_result(path: Path) -> Result:
    from .result import Result

    try:
        return Result.from_netcdf(path)
    except (OSError, ValueError, KeyError) as exc:
        _fail(f"{path}: cannot read the result ({type(exc).__name__}: {exc})", EXIT_REFUSED)


def _lookup_set(result: Result, explicit: ParameterSet | None) -> tuple[ParameterSet | None, str]:
    """The parameter set used to describe a run's parameters, and a note if it may differ."""
    ps = explicit
    if ps is None:
        from .parameters import load_parameters

        try:
            ps = load_parameters()
        except MicroneedlingError:
            return None, "note: the shipped parameter set could not be loaded"
    run_hash = str(result.dataset.attrs.get("parameter_set_hash", ""))
    if run_hash and run_hash != ps.hash:
        return ps, (
            f"note: the run used parameter set hash {run_hash}; details below come from "
            f"'{ps.label}' (hash {ps.hash}), which differs"
        )
    return ps, ""


def _format_value(value: Any) -> str:
    from .report import format_number

    if value is None:
        return "—"
    if isinstance(value, dict):
        return ", ".join(f"{k}={format_number(v)}" for k, v in value.items())
    return format_number(value)


def _format_interval(low: Any, high: Any) -> str:
    from .report import format_interval

    if low is None or high is None:
        return "—"
    if isinstance(low, dict) and isinstance(high, dict):
        return ", ".join(f"{k} {format_interval(low[k], high.get(k))}" for k in low)
    return format_interval(low, high) or "—"


def _parameter_rows(result: Result, ps: ParameterSet | None) -> list[dict[str, Any]]:
    """name/value/units/low/high/kind/sources of each parameter the run used."""
    records = _json_list(result.dataset.attrs.get("parameters"))
    if records and isinstance(records[0], dict):
        return [r for r in records if isinstance(r, dict)]
    rows = []
    for name in _json_list(result.dataset.attrs.get("parameters_used")):
        p = ps.parameters.get(name) if ps is not None else None
        if p is None:
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
            )
        else:
            rows.append(
                {
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


def _json_list(raw: Any) -> list[Any]:
    try:
        value = json.loads(str(raw)) if raw is not None else []
    except ValueError:
        return []
    return value if isinstance(value, list) else []


def _parameter_table(rows: list[dict[str, Any]], title: str) -> Any:
    from rich import box
    from rich.table import Table

    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    longest = max((len(str(r.get("name", ""))) for r in rows), default=4)
    table.add_column("Name", no_wrap=True, min_width=longest)  # names are never cut
    table.add_column("Value", justify="right", overflow="fold")
    table.add_column("Units", no_wrap=True)
    table.add_column("Interval", overflow="fold")
    table.add_column("Kind", no_wrap=True)
    table.add_column("Source", overflow="fold")
    for r in rows:
        srcs = r.get("sources", r.get("source", []))
        srcs = [srcs] if isinstance(srcs, str) else list(srcs)
        table.add_row(
            str(r.get("name", "?")),
            _format_value(r.get("value")),
            str(r.get("units", "")),
            _format_interval(r.get("low"), r.get("high")),
            str(r.get("kind", "")),
            ", ".join(str(s) for s in srcs),
        )
    return table


@app.command("sources")
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
) -> None:
    """List the references a run depended on, and how many of its parameters cite each."""
    from .report import reference_usage

    with _user_errors():
        explicit = _load_parameter_set(parameter_set)
        result = _load_run(run, explicit)
        ps, note = _lookup_set(result, explicit)
        refs = result.sources()
        usage = reference_usage(result, ps)
        rows = _parameter_rows(result, ps) if parameters else []
    attrs = result.dataset.attrs
    used = _json_list(attrs.get("parameters_used"))
    name = str(attrs.get("course_name", "")) or str(run)
    typer.echo(
        f"References used by {name!r}: {len(refs)} reference(s) behind {len(used)} parameter(s) "
        f"(parameter set {attrs.get('parameter_set_label', '?')!s}, "
        f"hash {attrs.get('parameter_set_hash', '?')!s})"
    )
    own_record = "parameters" in attrs
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
        typer.echo(f"{i:>{width}}. [{ref.key}] {ref.citation}")
        pad = " " * (width + 2)
        if ref.url:
            typer.echo(f"{pad}{ref.url}")
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
        _console().print(_parameter_table(rows, f"Parameters used ({len(rows)})"))
    typer.echo(f"NOTE: {DISCLAIMER}")


@app.command("parameters")
def parameters_command(
    group: Annotated[
        str | None,
        typer.Option("--group", "-g", metavar="G", help="Only one group (file), e.g. healing."),
    ] = None,
    parameter_set: ParameterSetOption = None,
) -> None:
    """Print the parameter table: name, value, units, interval, kind and source."""
    with _user_errors():
        ps = _load_parameter_set(parameter_set)
        if ps is None:
            from .parameters import load_parameters

            ps = load_parameters()
        names = ps.names(group)
        if group is not None and not names:
            groups = sorted({n.split(".", 1)[0] for n in ps.names()})
            _fail(f"--group: got {group!r}; allowed: {', '.join(groups)}", EXIT_BAD_INPUT)
        records = {r["name"]: r for r in ps.to_records()}
        rows = [records[n] for n in names]
    title = f"Parameter set '{ps.label}' (hash {ps.hash}): {len(rows)} parameter(s)"
    _console().print(_parameter_table(rows, title))


# ----------------------------------------------------------------- more commands
# Each further command lives in its own module ``cli_<name>.py``, which imports ``app`` and the
# helpers above and registers itself with ``@app.command``. One import line per module, here:
# (they come after ``app`` exists; the modules import only typer and light helpers at import time)
from . import (  # noqa: E402, F401
    cli_absorb,
    cli_calibrate,
    cli_plan,
    cli_sensitivity,
    cli_trial,
)


def main() -> None:
    """Console-script entry point ``microneedling``."""
    app(prog_name="microneedling")


if __name__ == "__main__":  # pragma: no cover
    main()
