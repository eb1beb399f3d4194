"""The engine looks a course's products up in the library in scope: a user molecule with a shipped
molecule's properties under a new key gives that molecule's numbers, shipped products give the same
numbers inside any scope, and chunks on worker processes carry the scope with them."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import xarray as xr

from microneedling.course.model import Course
from microneedling.engine.executor import map_chunks
from microneedling.engine.simulate import simulate
from microneedling.errors import InputError
from microneedling.parameters.molecules import (
    in_scope,
    molecules_from_tables,
    shipped_molecules,
    using_molecules,
)
from tests.paths import EXAMPLES
from tests.user_molecules import COPY, copy_table, serum_course


def _same_numbers(a: xr.Dataset, b: xr.Dataset) -> None:
    """Every variable and coordinate bit for bit (NaN where NaN); attributes may differ (the
    course's text names its product)."""
    assert list(a.variables) == list(b.variables)
    for k in a.variables:
        x, y = a.variables[k].values, b.variables[k].values
        assert x.dtype == y.dtype, k
        if x.dtype.kind == "f":  # bit for bit: -0.0 is not 0.0, NaN equals NaN
            assert x.tobytes() == y.tobytes(), k
        else:
            assert np.array_equal(x, y), k


def _ignoring_run_time(ds: xr.Dataset) -> dict:  # type: ignore[type-arg]
    return {k: v for k, v in ds.attrs.items() if k != "created"}


@pytest.mark.parametrize(
    ("shipped", "draws"),
    [("caffeine", 0), ("caffeine", 2), ("palmitoyl_pentapeptide_4", 0), ("egf", 0)],
)
def test_a_user_copy_of_a_shipped_molecule_gives_its_numbers(shipped: str, draws: int) -> None:
    """caffeine (neutral), the pentapeptide (an acid with pKa and an SC partition), EGF (a given
    radius): none has a depigmenting effect, so every output is transport's."""
    mine = molecules_from_tables({COPY: copy_table(shipped)})
    reference = simulate(Course.from_dict(serum_course(shipped)), draws=draws)
    with using_molecules(mine):
        course = Course.from_dict(serum_course(COPY))
        copied = simulate(course, draws=draws)
    assert float(np.nanmax(reference.dataset["absorbed_amount"].values)) > 0.0
    _same_numbers(reference.dataset, copied.dataset)
    # the lookup, not a copy of the shipped molecule: other properties give other numbers
    table = copy_table(shipped)
    table["d_aq"] = {**table["d_aq"], "value": 2 * shipped_molecules()[shipped].d_aq}
    faster = molecules_from_tables({COPY: table})
    with using_molecules(faster):
        other = simulate(course, draws=draws)
    assert not np.array_equal(
        other.dataset["absorbed_amount"].values, reference.dataset["absorbed_amount"].values
    )


@pytest.mark.parametrize(
    "name",
    [
        "melasma-tranexamic-acid.toml",
        "serum-absorption-study.toml",
        "acne-scars-rolling-cheek.toml",
    ],
)
def test_shipped_examples_give_the_same_numbers_inside_a_scope_of_user_molecules(
    name: str,
) -> None:
    course = Course.from_file(EXAMPLES / name)
    outside = simulate(course, draws=0).dataset
    with using_molecules(molecules_from_tables({COPY: copy_table("niacinamide")})):
        inside = simulate(course, draws=0).dataset
    _same_numbers(outside, inside)
    assert _ignoring_run_time(outside) == _ignoring_run_time(inside)


def test_a_course_validated_in_a_scope_and_simulated_outside_it_is_refused() -> None:
    with using_molecules(molecules_from_tables({COPY: copy_table()})):
        course = Course.from_dict(serum_course(COPY))
    with pytest.raises(InputError) as e:
        simulate(course, draws=0)
    assert e.value.field == "topical.product" and e.value.value == COPY


def test_chunks_on_a_local_cluster_run_inside_the_submitters_molecules() -> None:
    mine = molecules_from_tables({COPY: copy_table()})
    with using_molecules(mine):
        # in this process, then on a worker process (a context variable does not cross it)
        local = map_chunks(in_scope, [[COPY]])
        remote = map_chunks(in_scope, [[COPY], ["caffeine"]], workers=1)
    assert repr(local[0]) == repr({COPY: mine[COPY]})
    assert repr(remote[0]) == repr({COPY: mine[COPY]})  # NaN fields: compare their text
    assert remote[1] is not None and dataclasses.asdict(remote[1]["caffeine"]) is not None
    assert remote[1]["caffeine"].mw_g_per_mol == shipped_molecules()["caffeine"].mw_g_per_mol
