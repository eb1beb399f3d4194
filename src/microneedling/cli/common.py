"""What every command shares: exit codes, one-line errors, consoles, argument types, loading
inputs and guarding output directories.

Exit codes: 0 success; 1 a refusal by the package (``MicroneedlingError``: output exists, unknown
parameter, ...); 2 bad input (a course file that fails validation, a missing file, a bad option);
130 interrupted. User errors print one line, ``error: <reason>``, on stderr and never a traceback.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from microneedling.about import DISCLAIMER
from microneedling.course.model import Course
from microneedling.errors import CourseValidationError, MicroneedlingError
from microneedling.io import OutputExistsError, write_bytes_atomic, write_text_atomic
from microneedling.parameters.parameter_set import load_parameters

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console

    from microneedling.engine.result import Result
    from microneedling.parameters.parameter_set import ParameterSet

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_INTERRUPTED",
    "EXIT_REFUSED",
    "CourseArgument",
    "ParameterSetOption",
    "check_out_dir",
    "fail",
    "format_parameter_interval",
    "format_value",
    "load_course",
    "load_parameter_set",
    "make_console",
    "one_line",
    "parameter_table",
    "print_disclaimer",
    "run_simulation",
    "user_errors",
    "write_course",
]


EXIT_REFUSED = 1

EXIT_BAD_INPUT = 2

EXIT_INTERRUPTED = 130


# --------------------------------------------------------------------------- plumbing
def one_line(text: str) -> str:
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


def fail(message: str, code: int) -> NoReturn:
    typer.echo(f"error: {one_line(message)}", err=True)
    raise typer.Exit(code)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn the package's refusals into one line on stderr and an exit code (no traceback)."""
    try:
        yield
    except CourseValidationError as exc:
        fail(exc.one_line(), EXIT_BAD_INPUT)
    except MicroneedlingError as exc:
        fail(str(exc) or type(exc).__name__, EXIT_REFUSED)
    except KeyboardInterrupt:
        fail("interrupted; no output was written", EXIT_INTERRUPTED)


def make_console(stderr: bool = False) -> Console:
    """A rich console without markup (user text may contain brackets); wide when not a terminal."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None
    if not stream.isatty() and "COLUMNS" not in os.environ:
        width = 132
    return Console(stderr=stderr, width=width, markup=False, highlight=False, emoji=False)


def load_course(path: Path) -> Any:
    """Validate a course file; a missing/unreadable file is bad input (exit 2)."""
    if not path.exists():
        fail(f"{path}: course file not found", EXIT_BAD_INPUT)
    if not path.is_file():
        fail(f"{path}: not a file", EXIT_BAD_INPUT)

    try:
        return Course.from_file(path)
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"{path}: cannot read ({exc})", EXIT_BAD_INPUT)


def load_parameter_set(directory: Path | None) -> ParameterSet | None:
    if directory is None:
        return None
    if not directory.is_dir():
        fail(f"--parameter-set: {directory} is not a directory", EXIT_BAD_INPUT)

    return load_parameters(directory)


def run_simulation(course: Any, draws: int | None, parameters: ParameterSet | None) -> Result:
    """``simulate`` with the command's options (``None``: the library's defaults)."""
    from microneedling.engine.simulate import simulate

    kwargs: dict[str, Any] = {"parameters": parameters}
    if draws is not None:
        kwargs["draws"] = draws
    return simulate(course, **kwargs)


def check_out_dir(
    out: Path, overwrite: bool, marker: str = "result.nc", kind: str = "microneedling run"
) -> None:
    """Refuse early (before any work) when ``out`` cannot be written.

    ``--overwrite`` replaces only an empty directory or one that holds ``marker`` (the file every
    run directory of that ``kind`` has), never an unrelated directory.
    """

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


def write_course(course: Any, source: Path, out: Path) -> Path:
    """The validated input (``course.to_toml()`` when the Course offers it, else the file)."""

    to_toml = getattr(course, "to_toml", None)
    if callable(to_toml):
        return write_text_atomic(str(to_toml()), out / "course.toml")
    suffix = source.suffix.lower() if source.suffix.lower() in (".toml", ".json") else ".toml"
    return write_bytes_atomic(source.read_bytes(), out / f"course{suffix}")


def print_disclaimer(console: Console) -> None:
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


def format_value(value: Any) -> str:

    from microneedling.reports.format import format_number

    if value is None:
        return "—"
    if isinstance(value, dict):
        return ", ".join(f"{k}={format_number(v)}" for k, v in value.items())
    return format_number(value)


def format_parameter_interval(low: Any, high: Any) -> str:

    from microneedling.reports.format import format_interval

    if low is None or high is None:
        return "—"
    if isinstance(low, dict) and isinstance(high, dict):
        return ", ".join(f"{k} {format_interval(low[k], high.get(k))}" for k in low)
    return format_interval(low, high) or "—"


def parameter_table(rows: list[dict[str, Any]], title: str) -> Any:
    from rich import box
    from rich.table import Table

    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    longest = max((len(str(r.get("name", ""))) for r in rows), default=4)
    table.add_column("Name", no_wrap=True, min_width=longest)  # names are never cut
    table.add_column("Value", justify="right", overflow="fold")
    table.add_column("Units", no_wrap=True)
    table.add_column("Interval", no_wrap=True)
    table.add_column("Kind", no_wrap=True)
    table.add_column("Source", overflow="fold")
    for r in rows:
        srcs = r.get("sources", r.get("source", []))
        srcs = [srcs] if isinstance(srcs, str) else list(srcs)
        table.add_row(
            str(r.get("name", "?")),
            format_value(r.get("value")),
            str(r.get("units", "")),
            format_parameter_interval(r.get("low"), r.get("high")),
            str(r.get("kind", "")),
            ", ".join(str(s) for s in srcs),
        )
    return table
