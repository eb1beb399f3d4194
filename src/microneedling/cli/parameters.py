"""``microneedling parameters``: the parameter table with units, intervals and sources."""

from __future__ import annotations

from typing import Annotated

import typer

from microneedling.cli.common import (
    EXIT_BAD_INPUT,
    ParameterSetOption,
    fail,
    load_parameter_set,
    make_console,
    parameter_table,
    user_errors,
)
from microneedling.parameters.parameter_set import load_parameters


def parameters_command(
    group: Annotated[
        str | None,
        typer.Option("--group", "-g", metavar="G", help="Only one group (file), e.g. healing."),
    ] = None,
    parameter_set: ParameterSetOption = None,
) -> None:
    """Print the parameter table: name, value, units, interval, kind and source."""
    with user_errors():
        ps = load_parameter_set(parameter_set)
        if ps is None:
            ps = load_parameters()
        names = ps.names(group)
        if group is not None and not names:
            groups = sorted({n.split(".", 1)[0] for n in ps.names()})
            fail(f"--group: got {group!r}; allowed: {', '.join(groups)}", EXIT_BAD_INPUT)
        records = {r["name"]: r for r in ps.to_records()}
        rows = [records[n] for n in names]
    title = f"Parameter set '{ps.label}' (hash {ps.hash}): {len(rows)} parameter(s)"
    make_console().print(parameter_table(rows, title))
