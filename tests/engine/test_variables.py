"""The one table of output variables: every consumer derives from it.

The central test adds a new observable (a row in ``VARIABLES`` and its computation in the physics'
observation map) and checks that it appears in the Dataset with its attributes, in the end-point
grammar, in the end-point table and in the run report, with no other edit.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from microneedling.course.model import Course
from microneedling.engine import variables
from microneedling.engine.batch import simulate_batch
from microneedling.engine.endpoints import endpoint_values, parse_endpoint
from microneedling.engine.simulate import simulate
from microneedling.engine.variables import CLAIMS, VARIABLES, Variable, by_name, variable
from microneedling.errors import InputError
from microneedling.physics import observe
from microneedling.reports.run import render_html
from tests.paths import EXAMPLES

COURSE = EXAMPLES / "acne-scars-rolling-cheek.toml"


def test_names_are_unique_and_rows_consistent() -> None:
    names = [v.name for v in VARIABLES]
    assert len(names) == len(set(names))
    for v in VARIABLES:
        assert v.kind in ("time", "session", "setting"), v
        assert v.claim == "" or v.claim in CLAIMS, v
        assert (v.kind == "session") == bool(v.reduce), v  # outcomes summarise, others do not
        assert v.long_name and v.units, v
        if v.label:
            assert v.kind in ("time", "session"), v  # end points are outcomes


def test_every_output_of_a_run_has_a_row() -> None:
    run = simulate_batch([Course.from_file(COURSE)])
    table = by_name()
    for name, arr in run.observables.items():
        assert table[name].kind == "time", name
        assert table[name].layered == (arr.ndim == 3), name
    for name in run.per_session:
        assert table[name].kind == "session", name
    res = simulate(Course.from_file(COURSE), draws=0)
    for v in VARIABLES:
        assert v.name in res.dataset, v.name
        assert res[v.name].attrs["units"] == v.units
        assert res[v.name].attrs["long_name"] == v.long_name


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.toml")))
def test_levels_are_never_negative_and_changes_are_percent(name: str) -> None:
    # Variable.signed: only changes from baseline (%) may be negative; the calibration's likelihood
    # compares every other variable on a log scale, so a negative level would be a fault
    res = simulate(Course.from_file(EXAMPLES / name), draws=0)
    for v in VARIABLES:
        vals = np.asarray(res[v.name].values, dtype=float)
        if v.signed:
            assert v.units == "%", v.name
        else:
            assert not np.any(vals[np.isfinite(vals)] < 0.0), (name, v.name)


def test_unknown_variable_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="known: collagen_change"):
        variable("collagen")


def test_a_new_observable_appears_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    new = Variable(
        "test_signal",
        "mm",
        "A test signal: twice the scar depth",
        "time",
        claim="acne scars",
        label="Test signal",
        better="lower",
        figure="claims",
    )
    monkeypatch.setattr(variables, "VARIABLES", (*VARIABLES, new))
    original = observe.observables

    def with_signal(*args: Any, **kwargs: Any) -> dict[str, np.ndarray]:
        out = original(*args, **kwargs)
        out["test_signal"] = 2.0 * out["scar_depth"]
        return out

    monkeypatch.setattr(observe, "observables", with_signal)
    course = Course.from_file(COURSE)
    res = simulate(course, draws=3)
    # the Dataset: values, attributes, ensemble bands
    ds = res.dataset
    assert ds["test_signal"].attrs == {"units": "mm", "long_name": new.long_name}
    np.testing.assert_allclose(ds["test_signal"].values, 2.0 * ds["scar_depth"].values)
    assert "test_signal_low" in ds and "test_signal_high" in ds
    # the end-point grammar and its values
    spec = parse_endpoint("test_signal:reduction@last+90")
    assert spec.units == "%" and parse_endpoint("test_signal").units == "mm"
    run = simulate_batch([course])
    assert endpoint_values(run, "test_signal@end") == pytest.approx(
        2.0 * endpoint_values(run, "scar_depth@end")
    )
    # the end-point table
    df = res.endpoints()
    rows = df[df["variable"] == "test_signal"]
    assert len(rows) > 0 and set(rows["endpoint"]) == {"Test signal"}
    assert set(rows["claim"]) == {"acne scars"} and set(rows["units"]) == {"mm"}
    # the run report
    html = render_html(res)
    assert "A test signal: twice the scar depth" in html


def test_an_observable_without_a_row_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    original = observe.observables

    def with_stray(*args: Any, **kwargs: Any) -> dict[str, np.ndarray]:
        out = original(*args, **kwargs)
        out["stray"] = out["scar_depth"]
        return out

    monkeypatch.setattr(observe, "observables", with_stray)
    with pytest.raises(KeyError, match="stray"):
        simulate(Course.from_file(COURSE), draws=0)


def test_grammar_follows_the_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    # layers come from the row: a variable loses its layers when its row says so
    assert parse_endpoint("collagen_change.reticular").layer == "reticular"
    flat = tuple(replace(v, layered=False) if v.name == "collagen_change" else v for v in VARIABLES)
    monkeypatch.setattr(variables, "VARIABLES", flat)
    with pytest.raises(InputError, match="has no layers"):
        parse_endpoint("collagen_change.reticular")
    # and the course summary comes from its reduce
    assert parse_endpoint("pih_risk").per_session
    assert variable("pih_risk").summary_word == "worst session"


def test_every_dimensionless_end_point_says_what_its_number_is() -> None:
    """A table's units column is never empty: an end point without units (``1``) names its
    scale (a probability, a grade 1-4, a score 0-48), and only those do."""
    from microneedling.engine.variables import VARIABLES

    for v in VARIABLES:
        if v.is_endpoint and v.units == "1":
            assert v.scale, v.name
        if v.units != "1":
            assert not v.scale, v.name
