"""What every command shares: exit codes, one-line errors, consoles, argument types, loading
inputs and guarding output directories.

Exit codes: 0 success; 1 a refusal by the package (``MicroneedlingError``: output exists, unknown
parameter, output not writable, a file system error while writing ...); 2 bad input (a course file
that fails validation, a missing file, a bad option); 3 an internal error (a bug: one line, and the
traceback only with ``MICRONEEDLING_TRACEBACK=1``); 130 interrupted (Ctrl-C); 143 terminated
(SIGTERM). User errors print one line, ``error: <reason>``, on stderr and never a traceback.

Output directories: :func:`check_out_dir` is the one guard of every command that writes a
directory. It runs before any work, refuses an unwritable ``--out`` and replaces only a directory
carrying this package's marker for the same kind of run (:func:`microneedling.io.check_replaceable`);
the writers then run inside :func:`writing`, which names that kind for every directory they write.

User molecules: ``--molecules FILE`` (:data:`MoleculesOption`, repeatable) on every command that
takes courses; the command runs inside :func:`molecules_scope` and writes the user molecules its
courses name into its output directory (:func:`write_molecules`), beside ``course.toml``.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from typer.core import TyperCommand

from microneedling import interrupts
from microneedling.about import DISCLAIMER
from microneedling.errors import CourseValidationError, MicroneedlingError, ParameterError
from microneedling.io import (
    check_replaceable,
    check_writable,
    output_kind,
    remove_stale_temporaries,
    write_bytes_atomic,
    write_text_atomic,
)
from microneedling.parameters.molecules import (
    molecules_toml,
    used_extras,
    user_molecules,
    using_molecules,
)
from microneedling.parameters.parameter_set import load_parameters

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console

    from microneedling.engine.result import Result
    from microneedling.parameters.parameter_set import ParameterSet

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "EXIT_REFUSED",
    "EXIT_TERMINATED",
    "MAX_DRAWS",
    "MIN_DRAWS_FOR_INTERVALS",
    "STATE",
    "Command",
    "CourseArgument",
    "MoleculesOption",
    "ParameterSetOption",
    "Terminated",
    "check_out_dir",
    "collector_paused",
    "fail",
    "format_parameter_interval",
    "format_value",
    "install_signal_handlers",
    "load_course",
    "load_parameter_set",
    "make_console",
    "molecules_scope",
    "one_line",
    "os_error_line",
    "parameter_table",
    "print_disclaimer",
    "run_simulation",
    "units_text",
    "user_errors",
    "write_course",
    "write_molecules",
    "writing",
]


EXIT_REFUSED = 1

EXIT_BAD_INPUT = 2

EXIT_INTERNAL = 3

#: largest --draws of any command (each draw is one more case in the batched solve)
MAX_DRAWS = 1000
#: fewer draws than this give a rough 10-90% band (as microneedling.engine.simulate warns)
MIN_DRAWS_FOR_INTERVALS = 20

EXIT_INTERRUPTED = 130

EXIT_TERMINATED = 143


class Terminated(KeyboardInterrupt):
    """SIGTERM (or SIGHUP) received: unwinds like Ctrl-C, so every atomic writer removes its
    temporary and a trial keeps its finished chunks."""


#: what the process went through: a termination signal, an ``error:`` line already printed;
#: ``main``: the command runs as its own process (:func:`microneedling.cli.app.main`)
STATE: dict[str, bool] = {"terminated": False, "reported": False, "main": False}


def _terminate(signum: int, frame: FrameType | None) -> None:
    if interrupts.hold(signum):  # inside numba's compiler: raised once it has returned
        return
    # a second signal while cleaning up ends the process at once (the next run removes what
    # it left: microneedling.io.remove_stale_temporaries)
    signal.signal(signum, signal.SIG_DFL)
    STATE["terminated"] = True
    interrupts.clear()
    interrupts.mark_interrupted()
    raise Terminated(signal.Signals(signum).name)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    if interrupts.hold(signum):  # inside numba's compiler: raised once it has returned
        return
    interrupts.clear()
    interrupts.mark_interrupted()
    raise KeyboardInterrupt


def _rearm(exc: BaseException) -> int | None:
    """Put back the handler of the signal behind ``exc`` before it is delivered again."""
    if isinstance(exc, Terminated) and exc.args and exc.args[0] in signal.Signals.__members__:
        signum = signal.Signals[exc.args[0]]
        signal.signal(signum, _terminate)
        return int(signum)
    return None


def install_signal_handlers() -> None:
    """SIGTERM and SIGHUP unwind the command like Ctrl-C (see :class:`Terminated`).

    An interrupt raised while foreign code (numba's compiler, a ctypes callback) was calling Python
    is not lost: :mod:`microneedling.interrupts` raises it again after the callback. One that
    arrives while numba's compiler runs in the main thread is raised only once the compiler has
    returned (:func:`microneedling.interrupts.hold`: raised inside it, it can crash the process).
    """
    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _terminate)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _interrupt)
    interrupts.install_unraisable_hook(_rearm)


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic garbage collector paused through a phase of a command, then back as it was.

    ``simulate`` pauses it twice. While it imports its libraries and runs the model, it makes a
    few hundred thousand objects that live as long as the process (modules, numba's types and
    compiled functions, xarray's and pandas' classes); their number alone triggered the
    collector some 600 times (4 full passes), 0.25-0.7 s of a 2-5 s command, and it found almost
    nothing (60 objects). While it writes its outputs, the garbage is a few figures' reference
    cycles (~200 collections, 0.1-0.16 s), left to the end of the command. Peak memory moves by
    1-2%: objects are freed by reference counting as usual, only cycles wait. When the command
    is its own process (:func:`microneedling.cli.app.main`), what exists at the end of a phase is
    frozen (``gc.freeze``: never scanned again, as it lives until the exit anyway).
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if STATE["main"]:
            gc.freeze()
        if was:
            gc.enable()


# --------------------------------------------------------------------------- plumbing
def one_line(text: str) -> str:
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


def fail(message: str, code: int) -> NoReturn:
    typer.echo(f"error: {one_line(message)}", err=True)
    STATE["reported"] = True
    raise typer.Exit(code)


def os_error_line(exc: OSError) -> str:
    """An OSError as one line: the path(s) and the reason, no errno numbers."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    paths = [str(f) for f in (exc.filename, exc.filename2) if f is not None]
    where = " -> ".join(paths)
    return f"{where}: {reason}" if where else reason


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn the package's refusals into one line on stderr and an exit code (no traceback).

    A file system error (disk full, read-only, permission) is one line naming the path and the
    reason (exit 1); SIGTERM exits 143 and Ctrl-C 130, after the writers removed their temporaries.
    """
    try:
        yield
    except CourseValidationError as exc:
        fail(exc.one_line(), EXIT_BAD_INPUT)
    except MicroneedlingError as exc:
        fail(str(exc) or type(exc).__name__, EXIT_REFUSED)
    except OSError as exc:
        fail(f"cannot write or read {os_error_line(exc)}; no output was written", EXIT_REFUSED)
    except Terminated:
        fail("terminated; no output was written", EXIT_TERMINATED)
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

    from microneedling.course.model import Course  # pydantic: not for --help or --version

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


def check_out_dir(out: Path, overwrite: bool, kind: str) -> Path:
    """The one guard of every command that writes a directory; call it before any work.

    Returns ``out`` normalised (``a/../b`` is ``b``: nothing stray is created on the way). Refuses
    (:class:`~microneedling.io.OutputExistsError`, exit 1) an existing ``out`` without
    ``--overwrite``, a file or symbolic link, and a directory that does not carry this package's
    marker for a ``kind`` run (a user's own files are never replaced); refuses
    (:class:`~microneedling.io.OutputNotWritableError`) an ``out`` whose directory cannot be
    written. Temporaries left next to ``out`` by killed runs are removed.
    """
    target = check_writable(out)
    remove_stale_temporaries(target.parent, target.name)  # dead writers' only: always safe
    check_replaceable(target, overwrite, kind)
    return target


@contextlib.contextmanager
def writing(kind: str) -> Iterator[None]:
    """Every output directory written inside the block is marked as a ``kind`` run."""
    with output_kind(kind):
        yield


def write_course(course: Any, source: Path, out: Path) -> Path:
    """The validated input (``course.to_toml()`` when the Course offers it, else the file)."""

    to_toml = getattr(course, "to_toml", None)
    if callable(to_toml):
        return write_text_atomic(str(to_toml()), out / "course.toml")
    suffix = source.suffix.lower() if source.suffix.lower() in (".toml", ".json") else ".toml"
    return write_bytes_atomic(source.read_bytes(), out / f"course{suffix}")


#: what a dimensionless output is, where its units column would otherwise be empty
DIMENSIONLESS = {
    "pih_risk": "probability",
    "enhancement_ratio": "× intact skin",
    "elasticity_index": "R2, 0–1",
    "melanin_index": "Mexameter units",
    "reaches_capillaries": "yes = 1",
    "injured_fraction": "fraction",
}


def units_text(variable: str, units: str) -> str:
    """Units of an output for a table: ``µm``, ``%``; a dimensionless output says what it is
    (``probability``, ``× intact skin``) instead of leaving the column empty."""
    from microneedling.reports.format import pretty_units

    return pretty_units(units) or DIMENSIONLESS.get(variable, "no unit")


def print_disclaimer(console: Console) -> None:
    console.print(f"NOTE: {DISCLAIMER}", style="bold yellow", soft_wrap=True)


# --------------------------------------------------------------------------- commands
class Command(TyperCommand):
    """A command whose help reads plainly: ``Usage: microneedling plan [OPTIONS] PATIENT`` (not
    ``{PATIENT}``) and arguments listed by name without a ``<path>`` type."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = param.metavar or (param.name or "").upper()
                name = name if param.required else f"[{name}]"
                pieces.append(name + ("..." if param.nargs != 1 else ""))
        return pieces

    def format_options(self, ctx: Any, formatter: Any) -> None:
        args: list[tuple[str, str]] = []
        opts: list[tuple[str, str]] = []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                help_text = getattr(param, "help", None) or ""
                name = param.metavar or (param.name or "").upper()
                args.append((name, help_text + ("  [required]" if param.required else "")))
            else:
                record = param.get_help_record(ctx)
                if record is not None:
                    opts.append(record)
        if args:
            with formatter.section("Arguments"):
                formatter.write_dl(args)
        if opts:
            with formatter.section("Options"):
                formatter.write_dl(opts)


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


MoleculesOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--molecules",
        metavar="FILE",
        help="Your own topical molecules (a TOML file in the format of the shipped "
        "molecules.toml, new identifiers only; repeatable): the course may name them as products.",
        show_default=False,
    ),
]


@contextlib.contextmanager
def molecules_scope(paths: Sequence[Path] | None) -> Iterator[None]:
    """The command's block inside the user molecules of ``paths`` (``--molecules``); a missing or
    malformed file, or one that reuses a shipped identifier, is bad input (exit 2) naming the file
    and the problem."""
    if not paths:
        yield
        return
    for p in paths:
        if not p.is_file():
            fail(f"--molecules {p}: molecule file not found", EXIT_BAD_INPUT)
    try:
        extra = user_molecules(list(paths))
    except ParameterError as exc:
        text = str(exc)
        named = any(str(p) in text or p.name in text for p in paths)
        where = "" if named else f" {', '.join(str(p) for p in paths)}"
        fail(f"--molecules{where}: {text}", EXIT_BAD_INPUT)
    with using_molecules(extra):
        yield


def course_products(courses: Iterable[Any]) -> list[str]:
    """The topical products that ``courses`` name."""
    return [s.topical.product for c in courses for s in c.sessions if s.topical is not None]


def write_molecules(courses: Iterable[Any], out: Path) -> Path | None:
    """``out/molecules.toml``: the user molecules in scope that ``courses`` name (atomically), so
    that ``--molecules out/molecules.toml`` runs ``out/course.toml`` again; ``None`` (nothing
    written) when they name shipped products only."""
    used = used_extras(course_products(courses))
    if not used:
        return None
    return write_text_atomic(molecules_toml(used), out / "molecules.toml")


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


def _expand_keyed(r: dict[str, Any]) -> list[dict[str, Any]]:
    """A keyed parameter (a value per site, per scar type ...) as one row per key."""
    value = r.get("value")
    if not isinstance(value, dict):
        return [r]
    low, high = r.get("low"), r.get("high")
    return [
        {
            **r,
            "name": f"{r.get('name', '?')}[{k}]",
            "value": v,
            "low": low.get(k) if isinstance(low, dict) else None,
            "high": high.get(k) if isinstance(high, dict) else None,
        }
        for k, v in value.items()
    ]


def parameter_table(rows: list[dict[str, Any]], title: str) -> Any:
    """Name, value, units, 90% interval, kind and sources, one row per value (a keyed parameter
    gives one row per key, ``skin.sc_thickness[cheek]``), so no column is ever squeezed out."""
    from rich import box
    from rich.table import Table

    from microneedling.reports.format import pretty_units

    expanded = [e for r in rows for e in _expand_keyed(r)]
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    longest = max((len(str(r.get("name", ""))) for r in expanded), default=4)
    table.add_column("Name", no_wrap=True, min_width=min(longest, 48), overflow="fold")
    table.add_column("Value", justify="right", no_wrap=True)
    table.add_column("Units", no_wrap=True)
    table.add_column("90% interval", no_wrap=True)
    table.add_column("Kind", no_wrap=True)
    table.add_column("Sources", overflow="fold", min_width=12)
    for r in expanded:
        srcs = r.get("sources", r.get("source", []))
        srcs = [srcs] if isinstance(srcs, str) else list(srcs)
        interval = format_parameter_interval(r.get("low"), r.get("high"))
        table.add_row(
            str(r.get("name", "?")),
            format_value(r.get("value")),
            pretty_units(str(r.get("units", ""))) or str(r.get("units", "")),
            "none (fixed)" if interval == "—" and r.get("value") is not None else interval,
            str(r.get("kind", "")),
            ", ".join(str(s) for s in srcs),
        )
    return table
