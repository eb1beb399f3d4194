"""Scalar end points from batch runs: grammar, read times, transforms, per-session reductions."""

from __future__ import annotations

import numpy as np
import pytest

from microneedling.engine.batch import simulate_batch
from microneedling.engine.endpoints import (
    endpoint_table,
    endpoint_values,
    parse_endpoint,
    read_times,
)
from microneedling.engine.simulate import simulate
from microneedling.errors import InputError
from tests.engine.test_simulate import course


@pytest.mark.parametrize(
    "text",
    [
        "scar_depth",
        "scar_depth:reduction@last+90",
        "collagen_change.reticular@180",
        "collagen_I_change:change",
        "erythema_days",
        "melanin_index:percent_change@30.5",
    ],
)
def test_canonical_text_round_trips(text: str) -> None:
    spec = parse_endpoint(text)
    assert parse_endpoint(spec.text) == spec


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("no_such_thing", "a variable among"),
        ("scar_depth.reticular", "has no layers"),
        ("collagen_change.hypodermis", "a layer among"),
        ("scar_depth:doubled", "a transform among"),
        ("scar_depth@soon", "@<day>"),
        ("scar_depth@-3", "non-negative"),
        ("erythema_days@30", "summarised over sessions"),
        ("scar depth", "<variable>"),
    ],
)
def test_bad_endpoints_are_refused_naming_field_and_value(text: str, needle: str) -> None:
    with pytest.raises(InputError, match=r"arms\[0\]\.endpoints") as e:
        parse_endpoint(text, field="arms[0].endpoints")
    assert needle in str(e.value)


def test_values_agree_with_the_labelled_result() -> None:
    c = course()
    run = simulate_batch([c])
    ds = simulate(c, draws=0).dataset
    t = ds["time"].values
    depth = ds["scar_depth"].values[0, 0]
    # at the horizon: exact grid point
    assert endpoint_values(run, "scar_depth")[0] == pytest.approx(depth[-1], rel=1e-4)
    red = endpoint_values(run, "scar_depth:reduction@last+90")[0]
    at = np.interp(30.0 + 90.0, t, depth)
    assert red == pytest.approx(100.0 * (depth[0] - at) / depth[0], rel=1e-3)
    assert read_times(run, parse_endpoint("scar_depth@last+90"))[0] == 120.0
    ery = ds["erythema_days"].values[0, 0]
    assert endpoint_values(run, "erythema_days")[0] == pytest.approx(np.nansum(ery), rel=1e-6)
    assert endpoint_values(run, "pih_risk")[0] == pytest.approx(
        np.nanmax(ds["pih_risk"].values), rel=1e-9
    )
    col = ds["collagen_change"].sel(layer="reticular_dermis").values[0, 0]
    got = endpoint_values(run, "collagen_change.reticular@100")[0]
    assert got == pytest.approx(np.interp(100.0, t, col), rel=1e-3)


def test_not_applicable_is_nan_and_tables_use_canonical_names() -> None:
    c = course()
    run = simulate_batch([c])
    tab = endpoint_table(run, ["wrinkle_depth", "absorbed_amount", "collagen_change@end"])
    assert set(tab) == {"wrinkle_depth", "absorbed_amount", "collagen_change"}
    assert np.isnan(tab["wrinkle_depth"][0])  # no wrinkle condition at the site
    assert np.isnan(tab["absorbed_amount"][0])  # no topical
    assert tab["collagen_change"][0] > 0


def test_infinite_per_session_values_are_kept_not_turned_into_nan() -> None:
    import dataclasses

    run = simulate_batch([course()])
    ps = dict(run.per_session)
    ps["enhancement_ratio"] = np.array([[np.inf, np.inf]])
    run = dataclasses.replace(run, per_session=ps)
    assert endpoint_values(run, "enhancement_ratio")[0] == np.inf
