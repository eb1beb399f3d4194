"""Dermal claims through the whole engine: durable collagen, scars from their geometry (types,
depth, needle length, reach), elasticity baseline, texture, wrinkles, pores, striae (issue 10)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import microneedling as mn
from microneedling.engine.batch import BatchRun, simulate_batch
from microneedling.engine.endpoints import endpoint_values
from microneedling.studies.credibility.calibrate import MF8

YEAR = 365.25


def course(
    conditions: list[dict[str, Any]],
    *,
    n: int = 3,
    length: float = 1.5,
    interval: float = 28.0,
    horizon: float = 800.0,
    site: str = "cheek",
    untreated: bool = False,
    patient: dict[str, Any] | None = None,
) -> mn.Course:
    """A monthly 1.5 mm roller course (15 passes) at ``site``; ``untreated`` adds a forehead with
    the same conditions and no session."""
    sites = [{"name": site, "conditions": conditions}]
    if untreated:
        sites.append({"name": "forehead", "conditions": conditions})
    return mn.Course.from_dict(
        {
            "name": "dermis",
            "horizon_days": horizon,
            "patient": patient or {"age_years": 30, "sex": "female", "fitzpatrick": 2},
            "sites": sites,
            "device": {**MF8, "max_needle_length_mm": 3.0},
            "sessions": [
                {"day": interval * k, "site": site, "needle_length_mm": length, "passes": 15}
                for k in range(n)
            ],
        }
    )


def scar(kind: str, depth: float = 0.5, **geo: Any) -> dict[str, Any]:
    return {"type": "acne_scar", "scar_type": kind, "depth_mm": depth, "count": 10, **geo}


def ep(run: BatchRun, spec: str, case: int = 0) -> float:
    return float(endpoint_values(run, spec)[case])


def test_mature_collagen_at_12_months_at_least_that_at_3_months_and_scars_keep_improving() -> None:
    run = simulate_batch([course([scar("rolling")], n=3)])
    for layer in ("", ".reticular"):
        m3 = ep(run, f"mature_collagen_change{layer}@last+91")
        m12 = ep(run, f"mature_collagen_change{layer}@last+365")
        assert m3 > 1.0 and m12 >= m3
    # scar improvement maintained or growing 6-12 months after the course
    r6, r12 = (ep(run, f"scar_depth:reduction@last+{d}") for d in (182, 365))
    assert r6 > 10.0 and r12 >= r6 - 1e-9


def test_gains_persist_for_years_and_fade_on_a_multi_year_horizon() -> None:
    """Within the longest horizon a course may have (10 years); the return to baseline over
    decades is tested on the ODE (tests/physics/test_healing.py)."""
    run = simulate_batch([course([scar("rolling")], n=3, horizon=3650.0)])
    c = [ep(run, f"collagen_change@last+{d:.0f}") for d in (YEAR, 5 * YEAR, 9.5 * YEAR)]
    assert c[0] > c[1] > c[2] > 0
    assert c[1] > 0.7 * c[0] and c[2] < 0.8 * c[0]


def test_an_untreated_site_stays_at_baseline_to_round_off() -> None:
    conds = [
        scar("boxcar"),
        {"type": "wrinkles", "depth_um": 150.0},
        {"type": "pores", "diameter_um": 200.0},
        {"type": "striae", "width_mm": 3.0, "stage": "alba"},
        {"type": "photoaging"},
    ]
    run = simulate_batch([course(conds, untreated=True)])
    j = list(run.site).index("forehead")
    for name, arr in run.observables.items():
        x = arr[j].reshape(-1, arr.shape[-1])
        finite = np.isfinite(x[:, 0])
        flat = np.repeat(x[finite, :1], x.shape[-1], axis=1)
        np.testing.assert_array_equal(x[finite], flat, err_msg=name)
    assert run.observables["firmness_change"][j].max() == 0.0
    # ... while the treated site moved
    assert run.observables["scar_depth"][0, -1] < 0.5


def test_icepick_responds_least_and_rolling_and_boxcar_respond_alike() -> None:
    """Type defaults (Jacob 2001 widths and profiles, tethered / epithelial / distensible shares)
    at the same depth; no per-type response coefficient exists. Trials put rolling and boxcar
    scars together, ice-pick scars last (Lotfi 2013, Chakrawarty: calibration-role studies): the
    two respond within a factor of 2 of each other, ice-pick at most half of either."""
    kinds = ("rolling", "boxcar", "icepick")
    run = simulate_batch([course([scar(k)], n=4) for k in kinds])
    for when in ("last+30", "last+91", "last+365"):
        red = {k: ep(run, f"scar_depth:reduction@{when}", i) for i, k in enumerate(kinds)}
        assert red["icepick"] < 0.5 * min(red["boxcar"], red["rolling"]), red
        assert red["icepick"] > 0
        assert 0.5 < red["boxcar"] / red["rolling"] < 2.0, red
    # without tethers and epithelium the geometry alone gives icepick and boxcar the same order
    # of response: the icepick deficit is its epithelial tract, not the needles' reach
    geo = simulate_batch(
        [course([scar(k, tethered_share=0.0, epithelial_share=0.0)], n=4) for k in kinds]
    )
    red = {k: ep(geo, "scar_depth:reduction@last+91", i) for i, k in enumerate(kinds)}
    assert 0.5 < red["icepick"] / red["boxcar"] < 2.0


def test_depth_and_needle_length_matter_where_the_floor_is_deep() -> None:
    depths = (0.2, 0.4, 0.7)
    runs = {
        L: simulate_batch([course([scar("boxcar", h)], n=4, length=L) for h in depths])
        for L in (1.5, 2.0)  # 2.0 mm: safety.max_needle_length of the cheek
    }
    red = {L: [ep(r, "scar_depth:reduction@last+91", i) for i in range(3)] for L, r in runs.items()}
    assert np.all(np.diff(red[1.5]) < 0)  # deeper boxcars respond less at a fixed needle
    gain = [red[2.0][i] / red[1.5][i] for i in range(3)]
    assert all(g >= 1.0 for g in gain)  # a longer needle is never worse ...
    assert gain[2] > gain[0]  # ... and helps the deep floor most


def test_no_reach_no_response() -> None:
    """A rigid 1 mm box scar under 0.5 mm needles: the needles never reach its floor."""
    deep = scar("boxcar", 1.0, distensible_share=0.0, width_mm=3.0)
    run = simulate_batch([course([deep], n=4, length=0.5)])
    np.testing.assert_allclose(run.observables["scar_depth"][0], 1.0, rtol=0, atol=1e-12)
    assert np.all(run.prepared.scar_injured_fraction[0, :, 1:] == 0.0)


def test_narrow_scars_that_no_needle_touches_keep_their_depth() -> None:
    wide = scar("icepick", 0.5, width_mm=1.0)
    narrow = scar("icepick", 0.5, width_mm=0.1)
    run = simulate_batch([course([wide], n=1), course([narrow], n=1)])
    p0 = run.prepared.baseline.scar_untouched
    n = run.prepared.puncture_density_cm2[0, 0] * 1e4  # per m^2
    for i, w in enumerate((1.0e-3, 0.1e-3)):  # one session: P0 = exp(-n pi (w/2)^2)
        assert p0[i] == pytest.approx(np.exp(-n * np.pi * (w / 2) ** 2), rel=1e-12)
    assert p0[1] > 0.9 and p0[0] < 0.2
    assert ep(run, "scar_depth:reduction@last+91", 1) < ep(run, "scar_depth:reduction@last+91", 0)


def test_scar_grade_falls_with_the_depth_and_stays_in_the_scale() -> None:
    run = simulate_batch([course([scar(k)], n=4) for k in ("rolling", "boxcar", "icepick")])
    g = run.observables["scar_grade"]
    assert np.all((g >= 1.0) & (g <= 4.0))
    assert np.all(g[:, -1] < g[:, 0])
    assert (
        g[2, 0] > g[0, 0]
    )  # the rigid icepick tract starts higher than a distensible rolling scar


def test_texture_roughness_falls_and_scars_add_to_it() -> None:
    plain = course([{"type": "photoaging"}], n=3)
    scarred = course([scar("rolling")], n=3)
    run = simulate_batch([plain, scarred])
    sa0 = endpoint_values(run, "texture_roughness@0")
    sa = endpoint_values(run, "texture_roughness@last+182")
    assert np.all(sa < sa0) and sa0[1] > sa0[0]
    red = endpoint_values(run, "texture_roughness:reduction@last+182")
    assert red[1] > red[0] > 0


def test_elasticity_baseline_comes_from_age_sex_and_site_and_rises_after_a_course() -> None:
    young = {"age_years": 25, "sex": "female", "fitzpatrick": 2}
    old = {"age_years": 65, "sex": "female", "fitzpatrick": 2}
    man = {"age_years": 25, "sex": "male", "fitzpatrick": 2}
    cs = [course([{"type": "photoaging"}], patient=p) for p in (young, old, man)]
    cs.append(course([{"type": "photoaging"}], patient=young, site="abdomen"))
    run = simulate_batch(cs)
    r2 = endpoint_values(run, "elasticity_index@0")
    assert r2[0] > r2[1] and r2[0] > r2[2] and r2[3] > r2[0]
    assert 0.66 <= r2[1] and r2[0] <= 0.82  # the seen facial range
    # R2 tracks functional elastin, which needling barely changes (new fibre vs elastin lost to
    # MMPs; Kenkel 2021 unchanged, El-Domyati 2015 down): a small change of either sign
    assert np.all(np.abs(endpoint_values(run, "elasticity_index:change@last+182")) < 0.02)
    # firmness follows structural collagen: up after every course
    assert np.all(endpoint_values(run, "firmness_change@last+182") > 5.0)


def test_a_given_elasticity_r2_is_deprecated_but_used() -> None:
    c = course([{"type": "photoaging", "elasticity_r2": 0.55}])
    assert any("elasticity_r2" in w and "deprecated" in w for w in c.warnings)
    run = simulate_batch([c])
    assert ep(run, "elasticity_index@0") == pytest.approx(0.55)


def test_wrinkles_pores_and_striae_improve_durably() -> None:
    conds = [
        {"type": "wrinkles", "depth_um": 150.0},
        {"type": "pores", "diameter_um": 200.0},
        {"type": "striae", "width_mm": 3.0, "stage": "alba"},
    ]
    run = simulate_batch([course(conds, n=3)])
    # partial, not complete: under 90% (the former cap, 60%, was a design-time guess without a
    # source; the calibrated posterior of 2026-12-06, fitted to alsterli2020's >= 50% improvement in
    # every patient, gives a 74% narrower stretch mark at +12 months)
    for var in ("wrinkle_depth", "pore_diameter", "striae_width", "striae_depth"):
        r3 = ep(run, f"{var}:reduction@last+91")
        r12 = ep(run, f"{var}:reduction@last+365")
        assert 0.0 < r3 <= r12 + 1e-9 < 90.0, var


def test_scars_cover_at_most_their_site() -> None:
    """Many wide scars on a tiny site: the scars' area share stops at the whole site (found by the
    10^5-mutant fuzz run as an overflow warning); texture equals that of a site they just cover."""
    many = [scar("boxcar", count=10_000, width_mm=10.0)]
    tiny = course(many).model_dump(mode="json")
    tiny["sites"][0]["area_cm2"] = 1e-320
    just = course(many).model_dump(mode="json")
    just["sites"][0]["area_cm2"] = 10_000 * np.pi * 0.5**2  # 10^4 scars of 1 cm: 7,854 cm2
    with np.errstate(over="raise", divide="raise", invalid="raise"):  # underflow is harmless
        run = simulate_batch([mn.Course.from_dict(tiny)])
    sa_tiny = endpoint_values(run, "texture_roughness@last+182")
    assert np.all(np.isfinite(sa_tiny))
    run2 = simulate_batch([mn.Course.from_dict(just)])
    np.testing.assert_allclose(sa_tiny, endpoint_values(run2, "texture_roughness@last+182"))
