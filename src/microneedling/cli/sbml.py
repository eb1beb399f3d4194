"""``microneedling sbml COURSE --out MODEL.xml [--site SITE]``: export one site's healing model as
SBML Level 3 Version 2 (sessions as events)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from microneedling.cli.common import (
    EXIT_BAD_INPUT,
    CourseArgument,
    MoleculesOption,
    ParameterSetOption,
    fail,
    load_course,
    load_parameter_set,
    make_console,
    molecules_scope,
    print_disclaimer,
    user_errors,
)
from microneedling.errors import InputError
from microneedling.io import OutputExistsError, check_writable, write_text_atomic


def _is_sbml(path: Path) -> bool:
    """Whether ``path`` is an SBML document (what ``--overwrite`` may replace)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    return b"<sbml" in head


def sbml_command(
    course: CourseArgument,
    out: Annotated[
        Path, typer.Option("--out", "-o", metavar="FILE", help="SBML file to write (atomically).")
    ],
    site: Annotated[
        str | None,
        typer.Option("--site", metavar="SITE", help="Treated site to export (default: the first)."),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace FILE if it exists.")
    ] = False,
    parameter_set: ParameterSetOption = None,
    molecules: MoleculesOption = None,
) -> None:
    """Export the healing model of one site of COURSE as SBML Level 3 Version 2 (sessions as events),
    for COPASI, tellurium or libRoadRunner."""
    from microneedling.studies.sbml import export_sbml

    with user_errors(), molecules_scope(molecules):
        if out.is_dir():
            fail(f"--out: {out} is a directory; give a file name such as model.xml", EXIT_BAD_INPUT)
        out = check_writable(out)
        if out.exists() and not overwrite:
            raise OutputExistsError(f"{out} already exists; use --overwrite to replace it")
        if out.exists() and not _is_sbml(out):
            raise OutputExistsError(
                f"refusing to replace {out}: it is not an SBML file written by microneedling"
            )
        course_obj = load_course(course)
        ps = load_parameter_set(parameter_set)
        try:
            text = export_sbml(course_obj, ps, site)
        except InputError as exc:
            fail(f"--{exc}", EXIT_BAD_INPUT)
        write_text_atomic(text, out)
    console = make_console()
    print_disclaimer(console)
    console.print(f"Wrote {out} (SBML L3V2, {len(text) // 1024} KiB).", soft_wrap=True)
